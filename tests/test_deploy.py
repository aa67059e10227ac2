"""deploy/: the unit files pass `systemd-analyze verify` (in a throwaway root that holds this
machine's systemd units and stand-ins for the binaries the kiosk's unit runs), the settings the
appliance depends on are there (Type=notify, the watchdog, restarts, an unprivileged user, the
state dir, cage without VT switching, Ctrl+Alt+Del masked), and deploy/install.sh really makes
an image tree a kiosk (systemctl, sysusers and tmpfiles acting on it with --root)."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "city-kiosk.service"
TIMER = DEPLOY / "city-kiosk-retry.timer"
AGENT = DEPLOY / "city-kiosk-agent.service"
X11_DROPIN = DEPLOY / "x11/city-kiosk.service.d/x11.conf"
INSTALL = DEPLOY / "install.sh"
HOST_UNITS = Path("/usr/lib/systemd/system")


def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    """systemd's syntax as far as our files use it: [Section], Key=Value, repeated keys kept
    in order, comments (# ;) and blank lines skipped, no line continuations."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"{path.name}:{n}: a continuation line"
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}:{n}: {line}"
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None and "=" in line, f"{path.name}:{n}: {line}"
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def values(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def one(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> str:
    found = values(unit, section, key)
    assert len(found) == 1, (section, key, found)
    return found[0]


def words(unit: dict[str, list[tuple[str, str]]], section: str, key: str) -> list[str]:
    return [w for v in values(unit, section, key) for w in v.split()]


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "": 1}
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", text)
    assert m and m.group(2) in units, text
    return float(m.group(1)) * units[m.group(2)]


def exec_binaries(unit: dict[str, list[tuple[str, str]]]) -> list[str]:
    """The absolute program paths of every Exec*= line, without systemd's prefixes (-+@:!)."""
    found = []
    for key, value in unit["Service"]:
        if key.startswith("Exec") and value:  # an empty ExecStart= resets the list (a drop-in)
            program = value.split()[0].lstrip("-+@:!")
            assert program.startswith("/"), (key, value)
            found.append(program)
    return found


def make_root(tmp: Path) -> Path:
    """A root for --root: this machine's unit files (sysinit.target and friends), its passwd
    and group files, and executable stand-ins for what the kiosk's unit runs."""
    root = tmp / "root"
    (root / "usr/lib/systemd").mkdir(parents=True)
    shutil.copytree(HOST_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).touch(mode=0o600)
    for program in {p for unit in (UNIT, AGENT, X11_DROPIN) for p in exec_binaries(parse_unit(unit))}:
        stand_in = root / program.lstrip("/")
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        stand_in.write_text("#!/bin/sh\nexit 0\n")
        stand_in.chmod(0o755)
    return root


def analyze(root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    assert shutil.which("systemd-analyze"), "systemd-analyze is missing: `make deps` installs the systemd package"
    return subprocess.run(["systemd-analyze", "verify", f"--root={root}", *units],
                          capture_output=True, text=True, timeout=60)


# --- systemd-analyze verify ---------------------------------------------------------------------

def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    for unit in (UNIT, TIMER, AGENT):
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    result = analyze(root, UNIT.name, TIMER.name, AGENT.name)
    # verify exits 0 on an unknown key or a misspelt section and only says so: any word is a failure
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    # the X11 fallback is a drop-in over the same unit
    dropins = root / "etc/systemd/system/city-kiosk.service.d"
    dropins.mkdir()
    shutil.copy(X11_DROPIN, dropins / X11_DROPIN.name)
    result = analyze(root, UNIT.name)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
    (root / "usr/bin/xinit").unlink()  # and verify did read it: without xinit it fails
    assert "xinit" in analyze(root, UNIT.name).stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt key and a missing program are both reported."""
    root = make_root(tmp_path)
    text = UNIT.read_text(encoding="utf-8").replace("WatchdogSec=", "WatchdogSecs=")
    (root / "etc/systemd/system" / UNIT.name).write_text(text)
    result = analyze(root, UNIT.name)
    assert "Unknown key 'WatchdogSecs'" in result.stdout + result.stderr
    (root / "usr/bin/cage").unlink()
    result = analyze(root, UNIT.name)
    assert result.returncode != 0 and "cage" in result.stdout + result.stderr


# --- what the unit must say -------------------------------------------------------------------------

def test_the_ui_runs_under_cage_without_vt_switching() -> None:
    unit = parse_unit(UNIT)
    argv = one(unit, "Service", "ExecStart").split()
    assert argv[0] == "/usr/bin/cage"
    cage_options = argv[1:argv.index("--")]
    assert "-s" not in cage_options  # -s would allow VT switching
    assert cage_options == ["-d", "$CAGE_ARGS"]  # the local file may rotate, nothing more is assumed
    program = argv[argv.index("--") + 1:]
    assert program[:2] == ["/opt/city-kiosk/.venv/bin/kiosk", "ui"]
    # `kiosk ui` is a real command of this checkout (kiosk/ui_main.py), and takes the extra args
    from kiosk.cli import build_parser

    args = build_parser().parse_args(["ui", "--dpi", "96"])
    assert args.command == "ui" and args.dpi == 96.0 and not args.windowed and not args.demo


def test_the_x11_fallback_keeps_vt_switching_off() -> None:
    dropin = parse_unit(X11_DROPIN)
    assert values(dropin, "Service", "ExecStart")[0] == ""  # resets cage's ExecStart
    argv = values(dropin, "Service", "ExecStart")[1].split()
    assert argv[0] == "/usr/bin/xinit" and argv[1:3] == ["/opt/city-kiosk/.venv/bin/kiosk", "ui"]
    server = argv[argv.index("--") + 1:]
    assert server[0] == "/usr/lib/xorg/Xorg" and {"vt7", "-keeptty", "-nocursor"} <= set(server)
    xorg = (DEPLOY / "x11/xorg.conf.d/10-city-kiosk.conf").read_text(encoding="utf-8")
    for option in ("DontVTSwitch", "DontZap"):
        assert re.search(rf'^\s*Option\s+"{option}"\s+"true"', xorg, re.M), option
    assert {k for k, _ in dropin["Service"]} == {"ExecStart"}  # everything else is the cage unit's


def test_the_fleet_agent_runs_beside_the_ui() -> None:
    agent, ui = parse_unit(AGENT), parse_unit(UNIT)
    for key in ("User", "StateDirectory", "StateDirectoryMode"):
        assert one(agent, "Service", key) == one(ui, "Service", key), key
    assert one(agent, "Unit", "ConditionPathExists") == "/var/lib/city-kiosk/fleet/agent.json"
    argv = one(agent, "Service", "ExecStart").split()
    from kiosk.cli import build_parser

    args = build_parser().parse_args(argv[1:])
    assert args.command == "agent" and callable(args.func)
    assert one(agent, "Service", "PrivateDevices") == "yes"  # it needs no device, so it sees none
    rule = (DEPLOY / "polkit-1/rules.d/50-city-kiosk.rules").read_text(encoding="utf-8")
    assert f'subject.user == "{one(ui, "Service", "User")}"' in rule
    assert f'action.lookup("unit") == "{UNIT.name}"' in rule and 'action.lookup("verb") == "restart"' in rule


def test_notify_watchdog_and_restarts() -> None:
    unit = parse_unit(UNIT)
    assert one(unit, "Service", "Type") == "notify"
    assert one(unit, "Service", "NotifyAccess") == "all"  # the UI is cage's child, not the main pid
    watchdog = seconds(one(unit, "Service", "WatchdogSec"))
    assert 10 <= watchdog <= 120
    assert one(unit, "Service", "Restart") == "always"
    assert 1 <= seconds(one(unit, "Service", "RestartSec")) < watchdog
    assert seconds(one(unit, "Service", "TimeoutStartSec")) >= 60  # recovery runs before READY=1
    interval = seconds(one(unit, "Unit", "StartLimitIntervalSec"))
    burst = int(one(unit, "Unit", "StartLimitBurst"))
    assert burst >= 3 and interval >= burst * seconds(one(unit, "Service", "RestartSec"))
    assert "PYTHONFAULTHANDLER=1" in values(unit, "Service", "Environment")
    timer = parse_unit(TIMER)
    assert one(timer, "Timer", "Unit") == UNIT.name and values(timer, "Timer", "OnCalendar")


def test_an_unprivileged_user_with_its_device_groups() -> None:
    unit = parse_unit(UNIT)
    user = one(unit, "Service", "User")
    assert user not in ("root", "0") and one(unit, "Service", "Group") == user
    sysusers = (DEPLOY / "sysusers.d/city-kiosk.conf").read_text(encoding="utf-8").splitlines()
    lines = [ln.split() for ln in sysusers if ln.strip() and not ln.startswith("#")]
    assert any(parts[:2] == ["u", user] for parts in lines)
    members = {parts[2] for parts in lines if parts[:2] == ["m", user]}
    groups = set(words(unit, "Service", "SupplementaryGroups"))
    assert {"video", "render", "input", "dialout"} <= groups
    assert groups <= members  # sysusers creates every group the unit names, so none is missing at start
    assert one(unit, "Service", "NoNewPrivileges") == "yes"
    assert one(unit, "Service", "CapabilityBoundingSet") == ""


def test_a_seat_session_on_tty7() -> None:
    unit = parse_unit(UNIT)
    pam = one(unit, "Service", "PAMName")
    stack = (DEPLOY / "pam.d" / pam).read_text(encoding="utf-8")
    assert re.search(r"^session\s+required\s+pam_systemd\.so", stack, re.M)
    assert one(unit, "Service", "TTYPath") == "/dev/tty7"
    assert "getty@tty7.service" in words(unit, "Unit", "Conflicts")
    assert one(unit, "Service", "StandardInput") == "tty-fail"
    assert one(unit, "Install", "WantedBy") == "graphical.target"
    # every module the stack names exists on this Debian
    lib_dirs = [*Path("/usr/lib").glob("*/security"), *Path("/lib").glob("*/security")]
    for module in re.findall(r"(pam_\w+\.so)", stack):
        assert any((d / module).exists() for d in lib_dirs), module


def test_the_data_dir_is_the_state_dir() -> None:
    unit = parse_unit(UNIT)
    state = one(unit, "Service", "StateDirectory")
    assert "KIOSK_DATA_DIR=/var/lib/" + state in values(unit, "Service", "Environment")
    assert one(unit, "Service", "StateDirectoryMode") == "0700"
    assert one(unit, "Service", "ProtectSystem") == "strict"
    tmpfiles = (DEPLOY / "tmpfiles.d/city-kiosk.conf").read_text(encoding="utf-8")
    assert re.search(rf"^d\s+/var/lib/{state}\s+0700\s+{one(unit, 'Service', 'User')}\s", tmpfiles, re.M)


def test_hardening_leaves_the_devices_reachable() -> None:
    """Settings that would cut cage off from /dev/dri, /dev/input, the VT or /run/user stay out
    (docs/appliance.md says why); the homes are hidden another way."""
    unit = parse_unit(UNIT)
    keys = {k for k, _ in unit["Service"]}
    assert not keys & {"PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "MemoryDenyWriteExecute",
                       "ProtectHome", "PrivateUsers", "DynamicUser"}
    assert "-/run/user" in words(unit, "Service", "ReadWritePaths")
    assert {"-/home", "-/root"} <= set(words(unit, "Service", "InaccessiblePaths"))
    assert one(unit, "Service", "PrivateTmp") == "yes"


def test_exposure_scores_do_not_creep_up(tmp_path: Path) -> None:
    """systemd-analyze security, offline on the throwaway root: the UI 3.9 (what cage's devices
    allow), the agent 1.5. A setting dropped by accident shows as a higher score."""
    root = make_root(tmp_path)
    for unit in (UNIT, AGENT):
        shutil.copy(unit, root / "etc/systemd/system" / unit.name)
    for unit, limit in ((UNIT.name, 40), (AGENT.name, 16)):  # --threshold is in tenths of the 0–10 score
        result = subprocess.run(["systemd-analyze", "security", "--offline=yes", f"--root={root}",
                                 f"--threshold={limit}", unit], capture_output=True, text=True, timeout=60)
        score = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout + result.stderr)
        assert result.returncode == 0 and score, (unit, score and score.group(1), result.stderr[-500:])


def _template_keys(path: Path) -> set[str]:
    """Debian ships logind.conf and system.conf with every key commented out: '#Key=default'."""
    return set(re.findall(r"^#?([A-Z]\w+)=", path.read_text(encoding="utf-8"), re.M))


def test_no_vt_gettys_no_power_key_no_ctrl_alt_del_burst() -> None:
    logind = parse_unit(DEPLOY / "logind.conf.d/city-kiosk.conf")
    assert one(logind, "Login", "NAutoVTs") == "0" and one(logind, "Login", "ReserveVT") == "0"
    assert one(logind, "Login", "HandlePowerKey") == "ignore"
    assert {k for k, _ in logind["Login"]} <= _template_keys(Path("/etc/systemd/logind.conf"))
    manager = parse_unit(DEPLOY / "system.conf.d/city-kiosk.conf")
    assert one(manager, "Manager", "CtrlAltDelBurstAction") == "none"
    assert {k for k, _ in manager["Manager"]} <= _template_keys(Path("/etc/systemd/system.conf"))
    journald = parse_unit(DEPLOY / "journald.conf.d/city-kiosk.conf")
    assert one(journald, "Journal", "Storage") == "persistent"  # logs survive the crash they explain
    assert {k for k, _ in journald["Journal"]} <= _template_keys(Path("/etc/systemd/journald.conf"))
    sysctl = (DEPLOY / "sysctl.d/90-city-kiosk.conf").read_text(encoding="utf-8")
    assert re.search(r"^kernel\.sysrq\s*=\s*0\s*$", sysctl, re.M)


# --- install.sh ---------------------------------------------------------------------------------

def test_install_script_syntax() -> None:
    assert os.access(INSTALL, os.X_OK)
    assert subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True, text=True).returncode == 0
    if shutil.which("shellcheck"):  # not required; when present it must be clean
        result = subprocess.run(["shellcheck", "-s", "bash", str(INSTALL)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout


def test_install_refuses_volatile_storage() -> None:
    refused = subprocess.run([str(INSTALL), "--check-storage", "/dev/shm/city-kiosk"], capture_output=True, text=True)
    assert refused.returncode == 1 and "tmpfs: not persistent" in refused.stdout
    assert subprocess.run([str(INSTALL), "--check-storage", str(ROOT)], capture_output=True).returncode == 0


def test_install_dry_run_names_every_step_and_changes_nothing(tmp_path: Path) -> None:
    result = subprocess.run([str(INSTALL), "--dry-run", "--root", str(tmp_path)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "systemctl --root=" in out and " mask ctrl-alt-del.target" in out
    assert " enable city-kiosk.service city-kiosk-retry.timer" in out
    assert " disable getty@tty1.service" in out
    assert list(tmp_path.iterdir()) == []  # nothing written
    live = subprocess.run([str(INSTALL), "--dry-run", "--allow-volatile"], capture_output=True, text=True, timeout=60)
    assert live.returncode == 0, live.stderr
    apt = next(line for line in live.stdout.splitlines() if "apt-get install" in line)
    assert {"cage", "xwayland", "libpam-systemd", "python3-venv"} <= set(apt.split())
    assert re.search(r"would run: \S+/\.venv/bin/pip install .* " + re.escape(str(ROOT)) + "$", live.stdout, re.M)


def test_install_makes_an_image_tree_a_kiosk(tmp_path: Path) -> None:
    root = make_root(tmp_path)
    result = subprocess.run([str(INSTALL), "--root", str(root)], capture_output=True, text=True, timeout=120)
    if os.geteuid() != 0:
        # the data dir must belong to the kiosk user: only root can make it so
        assert result.returncode != 0 and "run as root" in result.stderr
        return
    assert result.returncode == 0, result.stdout + result.stderr
    etc = root / "etc/systemd/system"
    assert os.readlink(etc / "ctrl-alt-del.target") == "/dev/null"
    assert os.readlink(etc / "default.target").endswith("/graphical.target")
    assert (etc / "graphical.target.wants/city-kiosk.service").is_symlink()
    assert (etc / "timers.target.wants/city-kiosk-retry.timer").is_symlink()
    assert (etc / "multi-user.target.wants/city-kiosk-agent.service").is_symlink()
    assert not (etc / "city-kiosk.service.d/x11.conf").exists()
    for installed, source in [("etc/pam.d/city-kiosk", "pam.d/city-kiosk"),
                              ("etc/systemd/logind.conf.d/city-kiosk.conf", "logind.conf.d/city-kiosk.conf"),
                              ("etc/systemd/system.conf.d/city-kiosk.conf", "system.conf.d/city-kiosk.conf"),
                              ("etc/sysctl.d/90-city-kiosk.conf", "sysctl.d/90-city-kiosk.conf"),
                              ("etc/systemd/journald.conf.d/city-kiosk.conf", "journald.conf.d/city-kiosk.conf"),
                              ("etc/polkit-1/rules.d/50-city-kiosk.rules", "polkit-1/rules.d/50-city-kiosk.rules")]:
        assert (root / installed).read_bytes() == (DEPLOY / source).read_bytes()
    assert (root / "opt/city-kiosk/doc/appliance.md").exists()
    defaults = (root / "etc/default/city-kiosk").read_text()
    assert "KIOSK_UI_ARGS" in defaults and "CAGE_ARGS" in defaults
    assert not re.search(r"^[^#]", defaults, re.M)  # every setting is commented out: defaults rule
    entry = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
                 if line.startswith("city-kiosk:"))
    uid = int(entry[2])
    assert uid != 0 and entry[5] == "/var/lib/city-kiosk" and entry[6] == "/usr/sbin/nologin"
    data = (root / "var/lib/city-kiosk").stat()
    assert stat.S_IMODE(data.st_mode) == 0o700 and data.st_uid == uid
    # the installed unit verifies in the tree it was installed into
    verified = analyze(root, "city-kiosk.service", "city-kiosk-retry.timer", "city-kiosk-agent.service")
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    # switched to X11 and back: the drop-in and the X server's config come and go
    x11 = subprocess.run([str(INSTALL), "--root", str(root), "--x11"], capture_output=True, text=True, timeout=120)
    assert x11.returncode == 0, x11.stderr
    assert (etc / "city-kiosk.service.d/x11.conf").read_bytes() == X11_DROPIN.read_bytes()
    assert (root / "etc/X11/xorg.conf.d/10-city-kiosk.conf").exists()
    verified = analyze(root, "city-kiosk.service")
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    again = subprocess.run([str(INSTALL), "--root", str(root)], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert not (etc / "city-kiosk.service.d/x11.conf").exists()
    assert not (root / "etc/X11/xorg.conf.d/10-city-kiosk.conf").exists()
