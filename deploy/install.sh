#!/bin/bash
# Make a Debian 12 machine a City Kiosk: the kiosk user, the app in /opt/city-kiosk/.venv,
# the cage session on tty7 with its watchdog, no Ctrl+Alt+Del, no VT switching, no getty
# behind the UI, the data dir on persistent storage. Run as root from a checkout:
#
#   sudo deploy/install.sh            # then put kiosk.json in /var/lib/city-kiosk and reboot
#
# Options:
#   --root DIR        install into an image tree at DIR (no apt, no pip unless --venv, nothing
#                     started; systemctl/sysusers/tmpfiles act on DIR with their --root)
#   --no-apt          do not install Debian packages
#   --no-venv         do not (re)install the Python environment
#   --venv            with --root: build the venv in DIR/opt/city-kiosk anyway
#   --x11             Xorg with no window manager instead of cage (deploy/x11)
#   --keep-console    leave getty@tty1 (a login prompt on Ctrl+Alt+F1 while the UI is down)
#   --allow-volatile  install even when /var/lib is not on persistent storage
#   --now             start the kiosk at the end instead of waiting for a reboot
#   --dry-run         say what would be done, change nothing
#   --check-storage PATH   only say whether PATH is on persistent storage (exit 0/1)
# Environment: PIP_ARGS (extra pip arguments, e.g. --no-index --find-links=/media/wheels),
#              PYTHON (default python3).
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPLOY="$SRC/deploy"
ROOT=""
APT=1
VENV=1
VENV_IN_ROOT=0
KEEP_CONSOLE=0
X11=0
ALLOW_VOLATILE=0
START_NOW=0
DRY_RUN=0
PREFIX=/opt/city-kiosk
STATE=/var/lib/city-kiosk
PYTHON=${PYTHON:-python3}
PIP_ARGS=${PIP_ARGS:-}

# what the appliance needs at run time: the compositor and Xwayland (SDL may take either
# Wayland or X11), chvt, logind's PAM module, Mesa, Python with venv, the libraries the kiosk
# loads (zbar for pyzbar, fribidi + harfbuzz for Persian text in Pillow, glib for OpenCV) and a
# fallback font (the UI's own Vazirmatn ships inside the package)
# (polkitd: the rule that lets the fleet agent restart the UI)
DEB_PACKAGES=(kbd dbus libpam-systemd polkitd libgl1 libegl1 libgles2 libgl1-mesa-dri
              python3 python3-venv libzbar0 libfribidi0 libharfbuzz0b libglib2.0-0
              fonts-dejavu-core)
WAYLAND_PACKAGES=(cage xwayland)
X11_PACKAGES=(xserver-xorg-core xserver-xorg-input-libinput xinit)

say() { printf 'city-kiosk install: %s\n' "$*"; }
die() { printf 'city-kiosk install: error: %s\n' "$*" >&2; exit 1; }

run() {
    if [ "$DRY_RUN" = 1 ]; then
        printf 'would run:'; printf ' %q' "$@"; printf '\n'
    else
        "$@"
    fi
}

# Persistent means a real disk file system: tmpfs/ramfs vanish at power-off, and with them the
# journal that says which payments are open. An overlay is often a tmpfs over a read-only root.
check_storage() {
    local path=$1 fs
    while [ ! -e "$path" ]; do path=$(dirname "$path"); done
    fs=$(stat -f -c %T "$path")
    case "$fs" in
        tmpfs|ramfs|squashfs|iso9660)
            say "$path is on $fs: not persistent"; return 1 ;;
        overlayfs|overlay)
            say "warning: $path is on an overlay; make sure its upper layer is on a disk"; return 0 ;;
        *)
            say "$path is on $fs: persistent"; return 0 ;;
    esac
}

while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=$(cd "${2:?--root needs a directory}" && pwd); APT=0; shift ;;
        --no-apt) APT=0 ;;
        --no-venv) VENV=0 ;;
        --venv) VENV_IN_ROOT=1 ;;
        --keep-console) KEEP_CONSOLE=1 ;;
        --x11) X11=1 ;;
        --allow-volatile) ALLOW_VOLATILE=1 ;;
        --now) START_NOW=1 ;;
        --dry-run) DRY_RUN=1 ;;
        --check-storage) check_storage "${2:?--check-storage needs a path}"; exit $? ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

if [ -n "$ROOT" ] && [ "$VENV_IN_ROOT" = 0 ]; then VENV=0; fi
[ "$DRY_RUN" = 1 ] || [ "$(id -u)" = 0 ] || die "run as root (or with --dry-run)"
[ -z "$ROOT" ] && [ ! -e /etc/debian_version ] && say "warning: not Debian; package names may differ"

# systemctl, sysusers and tmpfiles act on the image at --root, or on this machine
SYSTEMCTL=(systemctl); SYSUSERS=(systemd-sysusers); TMPFILES=(systemd-tmpfiles)
if [ -n "$ROOT" ]; then
    SYSTEMCTL+=(--root="$ROOT"); SYSUSERS+=(--root="$ROOT"); TMPFILES+=(--root="$ROOT")
fi

# 0. the data dir must survive a power cut
if [ -z "$ROOT" ] && ! check_storage "$STATE"; then
    [ "$ALLOW_VOLATILE" = 1 ] || die "$STATE would not survive a reboot (mount a disk there, or --allow-volatile)"
fi

# 1. Debian packages
if [ "$APT" = 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    run apt-get update -qq
    if [ "$X11" = 1 ]; then DEB_PACKAGES+=("${X11_PACKAGES[@]}"); else DEB_PACKAGES+=("${WAYLAND_PACKAGES[@]}"); fi
    run apt-get install -y -qq --no-install-recommends "${DEB_PACKAGES[@]}"
fi

# 2. files: units, the user, the data dir, PAM, logind, manager, sysctl
install_file() {  # install_file MODE SOURCE TARGET (TARGET is a path on the machine)
    run install -D -m "$1" "$2" "$ROOT$3"
}
install_file 0644 "$DEPLOY/city-kiosk.service"            /etc/systemd/system/city-kiosk.service
install_file 0644 "$DEPLOY/city-kiosk-retry.timer"        /etc/systemd/system/city-kiosk-retry.timer
install_file 0644 "$DEPLOY/city-kiosk-agent.service"      /etc/systemd/system/city-kiosk-agent.service
install_file 0644 "$DEPLOY/polkit-1/rules.d/50-city-kiosk.rules" /etc/polkit-1/rules.d/50-city-kiosk.rules
if [ "$X11" = 1 ]; then
    install_file 0644 "$DEPLOY/x11/city-kiosk.service.d/x11.conf" /etc/systemd/system/city-kiosk.service.d/x11.conf
    install_file 0644 "$DEPLOY/x11/xorg.conf.d/10-city-kiosk.conf" /etc/X11/xorg.conf.d/10-city-kiosk.conf
else  # back to cage after an X11 install
    run rm -f "$ROOT/etc/systemd/system/city-kiosk.service.d/x11.conf" "$ROOT/etc/X11/xorg.conf.d/10-city-kiosk.conf"
fi
install_file 0644 "$DEPLOY/sysusers.d/city-kiosk.conf"    /etc/sysusers.d/city-kiosk.conf
install_file 0644 "$DEPLOY/tmpfiles.d/city-kiosk.conf"    /etc/tmpfiles.d/city-kiosk.conf
install_file 0644 "$DEPLOY/pam.d/city-kiosk"              /etc/pam.d/city-kiosk
install_file 0644 "$DEPLOY/logind.conf.d/city-kiosk.conf" /etc/systemd/logind.conf.d/city-kiosk.conf
install_file 0644 "$DEPLOY/system.conf.d/city-kiosk.conf" /etc/systemd/system.conf.d/city-kiosk.conf
install_file 0644 "$DEPLOY/journald.conf.d/city-kiosk.conf" /etc/systemd/journald.conf.d/city-kiosk.conf
install_file 0644 "$DEPLOY/sysctl.d/90-city-kiosk.conf"   /etc/sysctl.d/90-city-kiosk.conf
install_file 0644 "$SRC/docs/appliance.md"                "$PREFIX/doc/appliance.md"
if [ ! -e "$ROOT/etc/default/city-kiosk" ]; then
    if [ "$DRY_RUN" = 1 ]; then
        say "would write $ROOT/etc/default/city-kiosk"
    else
        mkdir -p "$ROOT/etc/default"
        cat > "$ROOT/etc/default/city-kiosk" <<'EOF'
# Read by city-kiosk.service (EnvironmentFile=). Arguments added to `kiosk ui`:
#KIOSK_UI_ARGS="--dpi 96"
# Arguments added to cage: -r rotates the output 90 degrees clockwise (twice: 180, ...)
#CAGE_ARGS="-r"
EOF
    fi
fi

run "${SYSUSERS[@]}" "$ROOT/etc/sysusers.d/city-kiosk.conf"
run "${TMPFILES[@]}" --create "$ROOT/etc/tmpfiles.d/city-kiosk.conf"

# 3. the application: its own venv, the appliance without the server extras
if [ "$VENV" = 1 ]; then
    run "$PYTHON" -m venv --clear "$ROOT$PREFIX/.venv"
    # shellcheck disable=SC2086  # PIP_ARGS is a list of words on purpose
    run "$ROOT$PREFIX/.venv/bin/pip" install -q $PIP_ARGS "$SRC"
    if [ "$DRY_RUN" = 0 ] && [ ! -x "$ROOT$PREFIX/.venv/bin/kiosk" ]; then
        die "$ROOT$PREFIX/.venv/bin/kiosk was not installed"
    fi
fi

# 4. systemd: the unit at boot, Ctrl+Alt+Del off, no getty behind the UI
run "${SYSTEMCTL[@]}" mask ctrl-alt-del.target
run "${SYSTEMCTL[@]}" set-default graphical.target
run "${SYSTEMCTL[@]}" enable city-kiosk.service city-kiosk-retry.timer
# the agent starts only once the kiosk is enrolled (ConditionPathExists= on fleet/agent.json)
run "${SYSTEMCTL[@]}" enable city-kiosk-agent.service
if [ "$KEEP_CONSOLE" = 0 ]; then
    # NAutoVTs=0 stops getty on the other VTs; tty1's is enabled by Debian itself
    run "${SYSTEMCTL[@]}" disable getty@tty1.service
fi
if [ -z "$ROOT" ]; then
    if "${SYSTEMCTL[@]}" is-enabled display-manager.service >/dev/null 2>&1; then
        say "warning: a display manager is enabled; it competes for the screen — disable it"
    fi
    run systemctl daemon-reexec   # re-reads system.conf.d (CtrlAltDelBurstAction=none)
    run sysctl -q -p /etc/sysctl.d/90-city-kiosk.conf
    run systemctl restart systemd-journald.service   # the journal moves to /var/log/journal
    if [ "$START_NOW" = 1 ]; then
        run systemctl start city-kiosk.service city-kiosk-retry.timer
    fi
fi

if [ ! -e "$ROOT$STATE/kiosk.json" ]; then
    say "no $STATE/kiosk.json yet: enroll the kiosk (kiosk agent enroll) or copy one there (owner city-kiosk, 0600)"
fi
say "done. Reboot to start the kiosk (logind.conf.d and the getty changes apply at boot)."
