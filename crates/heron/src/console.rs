//! The serial console on the host terminal: stdin read on a thread, raw mode when stdin is a
//! TTY, and QEMU's escape sequence (Ctrl-A X quits, Ctrl-A Ctrl-A sends Ctrl-A).

use std::io::Read;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use heron_machine::ConsoleInput;

const CTRL_A: u8 = 0x01;

/// Console input from the process's stdin.
pub struct StdinConsole {
    rx: Receiver<Vec<u8>>,
    quit: Arc<AtomicBool>,
    saved: Option<libc::termios>,
    closed: bool,
}

impl StdinConsole {
    /// Start reading stdin; puts a TTY into raw mode until dropped.
    pub fn new() -> Self {
        // SAFETY: isatty/tcgetattr/tcsetattr on fd 0 with a properly sized termios buffer.
        let saved = unsafe {
            if libc::isatty(0) == 1 {
                let mut t: libc::termios = std::mem::zeroed();
                if libc::tcgetattr(0, &mut t) == 0 {
                    let orig = t;
                    libc::cfmakeraw(&mut t);
                    // Keep output post-processing so the guest's "\n" still renders sanely.
                    t.c_oflag |= libc::OPOST;
                    libc::tcsetattr(0, libc::TCSANOW, &t);
                    Some(orig)
                } else {
                    None
                }
            } else {
                None
            }
        };
        let tty = saved.is_some();
        let (tx, rx) = channel();
        let quit = Arc::new(AtomicBool::new(false));
        let q = quit.clone();
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 256];
            let mut escape = false;
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    if tty && escape {
                        escape = false;
                        match b {
                            b'x' | b'X' => {
                                q.store(true, Ordering::SeqCst);
                                return;
                            }
                            CTRL_A => out.push(CTRL_A),
                            _ => {}
                        }
                    } else if tty && b == CTRL_A {
                        escape = true;
                    } else {
                        out.push(b);
                    }
                }
                if tx.send(out).is_err() {
                    break;
                }
            }
        });
        StdinConsole { rx, quit, saved, closed: false }
    }
}

impl Drop for StdinConsole {
    fn drop(&mut self) {
        if let Some(t) = self.saved {
            // SAFETY: restores the termios read in `new` on the same fd.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

impl ConsoleInput for StdinConsole {
    fn poll(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(b) => v.extend(b),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
        v
    }

    fn wait(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        if self.closed {
            return None;
        }
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Some(b),
            Err(RecvTimeoutError::Timeout) => Some(Vec::new()),
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                None
            }
        }
    }

    fn quit_requested(&self) -> bool {
        self.quit.load(Ordering::SeqCst)
    }

    fn interactive(&self) -> bool {
        self.saved.is_some()
    }
}
