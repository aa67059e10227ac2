"""Fleet provisioning (issue 11): the fleet server (`provisioning.server`, the `fleet`
command, [server] extra), the kiosk-side agent (`provisioning.agent`, `kiosk agent`) and
the wire rules both must agree on (`provisioning.common`: signing, canonical JSON, config
documents). The agent and `common` import only what the appliance may import."""
