//! `containerd-shim-hostgate-v1`: see `hostgate_agent::shim`. Logs go to containerd's log pipe
//! (the bundle's `log` FIFO); standard output carries only the `start` action's address.

fn main() {
    hostgate_agent::shim::actions::run();
}
