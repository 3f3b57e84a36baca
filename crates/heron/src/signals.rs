//! SIGINT/SIGTERM: stop the guest at the next instruction boundary so the machine can flush
//! its drives before Heron exits (every write the guest saw complete is then durable).

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::sync::OnceLock;

static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: two atomic stores.
    SIGNAL.store(sig, Ordering::SeqCst);
    if let Some(s) = STOP.get() {
        s.store(true, Ordering::SeqCst);
    }
}

/// Install handlers for SIGINT and SIGTERM; returns the flag they set.
pub fn install() -> Arc<AtomicBool> {
    let flag = STOP.get_or_init(|| Arc::new(AtomicBool::new(false))).clone();
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installing a handler that only touches atomics is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    flag
}

/// The signal that stopped the run (0 if none).
pub fn received() -> i32 {
    SIGNAL.load(Ordering::SeqCst)
}
