//! Intel 8254 programmable interval timer (PIT) of the PC, plus the "NMI status and control"
//! port 0x61 that carries counter 2's GATE input and OUT output.
//!
//! Counter 0's OUT drives IRQ 0, counter 1 (DRAM refresh on old PCs) has no effect, counter 2
//! feeds the speaker. All three counters are clocked at [`PIT_HZ`] (1.193182 MHz). Names follow
//! the Intel 82C54 datasheet: CR (count register), CE (counting element), OL (output latch),
//! control word, counter latch command, read-back command, status byte, NULL COUNT, OUT, GATE,
//! modes 0–5 ("interrupt on terminal count", "hardware retriggerable one-shot",
//! "rate generator", "square wave mode", "software triggered strobe", "hardware triggered
//! strobe").
//!
//! # Time
//!
//! The counters are not stepped: their state is a function of virtual time. The CLK tick count
//! at `now` nanoseconds is `floor(now * 1193182 / 10^9)` (integer math, exact and
//! deterministic), and every read computes the count or OUT level at that tick.
//!
//! # Port addressing
//!
//! The machine registers one [`Pit`] at ports 0x40–0x43 and 0x61 and passes the **absolute port
//! number** as `offset` to [`Device::read`] / [`Device::write`]. All registers are 8 bits wide:
//! a wider access acts on its first byte only (the port in `offset`); extra bytes of a read
//! return 0xFF and extra bytes of a write are ignored. The control word register (0x43) is
//! write-only and reads 0xFF, as do all other ports.
//!
//! # IRQ 0
//!
//! The PIC sees IRQ 0 as an edge-triggered input, so what matters is each rising edge of OUT0.
//! [`Device::next_deadline`] returns the virtual time of the next rising edge of OUT0 (or of an
//! edge already recorded and not yet taken); [`Device::tick`] records the edges up to `now`;
//! [`Pit::take_irq0_edge`] reports them. The machine must, after every `tick` **and** after every
//! write to the PIT's ports (a control word can raise OUT0 at once), do:
//!
//! ```text
//! if pit.take_irq0_edge() { pic.set_irq(0, true); pic.set_irq(0, false); }
//! ```
//!
//! # Simplifications
//!
//! * A count written to the CR is transferred to the CE at the CLK tick of the write (the
//!   datasheet's extra CLK pulse for the load is not modelled), so NULL COUNT clears at once in
//!   modes 0 and 4. In modes 1 and 5 NULL COUNT stays set until the GATE trigger loads the count;
//!   in modes 2 and 3 a count written while counting is loaded at the end of the current period
//!   (mode 2) or half-period (mode 3), as the datasheet specifies.
//! * An initial count of 1 in modes 2 and 3 (illegal per the datasheet) keeps OUT high and
//!   produces no edges.
//! * After power-on every counter is in mode 0 with no count written and OUT high (the datasheet
//!   leaves this state undefined; the BIOS programs the counters).

use crate::{Device, Nanos};

/// Input clock of all three counters in Hz (PC/AT crystal 14.31818 MHz / 12). 82C54 datasheet, CLK.
pub const PIT_HZ: u64 = 1_193_182;

/// First counter data port (counter 0; counters 1 and 2 follow). 82C54 datasheet, A1 A0.
pub const PIT_COUNTER0_PORT: u16 = 0x40;
/// Control word register port (write-only). 82C54 datasheet, "Control Word Register".
pub const PIT_CONTROL_PORT: u16 = 0x43;
/// PC/AT "NMI status and control" port (a.k.a. port B): GATE2, speaker enable, refresh toggle,
/// OUT2. IBM PC/AT technical reference, port 061h.
pub const PORT_B: u16 = 0x61;

/// Period of the port 0x61 bit 4 refresh toggle in ns: the bit flips every 15.085 µs.
pub const REFRESH_TOGGLE_NS: u64 = 15_085;

const NS_PER_SEC: u128 = 1_000_000_000;

/// CLK ticks elapsed at virtual time `now` (floor).
fn ticks_at(now: Nanos) -> i64 {
    (u128::from(now) * u128::from(PIT_HZ) / NS_PER_SEC) as i64
}

/// The first virtual time (ns) at which `ticks_at` reaches `tick`.
fn ns_of_tick(tick: i64) -> Nanos {
    if tick <= 0 {
        return 0;
    }
    let hz = u128::from(PIT_HZ);
    let ns = (tick as u128 * NS_PER_SEC).div_ceil(hz);
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// BCD (four digits) to binary; invalid digits are taken at face value.
fn from_bcd(v: u16) -> u32 {
    let d = |s: u32| u32::from((v >> s) & 0xF);
    d(12) * 1000 + d(8) * 100 + d(4) * 10 + d(0)
}

/// Binary 0–9999 to four BCD digits.
fn to_bcd(v: u32) -> u16 {
    let v = v % 10_000;
    ((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10)) as u16
}

/// A pending CR → CE transfer in modes 2 and 3: from tick `at`, the timeline is (`start`, `n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Switch {
    at: i64,
    start: i64,
    n: u32,
}

/// What the counting element is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Not counting: after a control word, before a trigger, or (modes 2/3) while GATE is low.
    Held { count: u32, out: bool },
    /// Modes 0/4 with GATE low: counting suspended with `c0` ticks to terminal count (or, if
    /// `done`, with the wrapped count `c0`).
    Frozen { c0: u32, done: bool },
    /// Modes 0, 1, 4, 5: counting down from `c0` since tick `start`; terminal count at
    /// `start + c0` unless already `done` before `start`.
    OneShot { start: i64, c0: u32, done: bool },
    /// Modes 2, 3: periodic with period `n` ticks; a period (mode 3: its high half) begins at
    /// `start`, which may lie before the time of the load in mode 3.
    Periodic { start: i64, n: u32, next: Option<Switch> },
}

/// One 8254 counter.
#[derive(Debug, Clone)]
struct Counter {
    /// Effective mode 0–5.
    mode: u8,
    /// M2–M0 as written (6 and 7 read back as written).
    mode_bits: u8,
    /// RW1–RW0: 1 = LSB only, 2 = MSB only, 3 = LSB then MSB.
    rw: u8,
    /// BCD counting.
    bcd: bool,
    /// GATE input level.
    gate: bool,
    /// CR as binary count, 1..=65536 (1..=10000 in BCD); a written 0 is the maximum.
    cr: u32,
    /// A complete count has been written since the control word.
    cr_valid: bool,
    /// LSB-then-MSB write flip-flop: the next write is the MSB.
    write_msb_next: bool,
    /// LSB waiting for its MSB.
    write_lsb: u8,
    /// LSB-then-MSB read flip-flop: the next read is the MSB.
    read_msb_next: bool,
    /// OL contents after a counter latch or read-back command (raw, BCD-encoded if BCD).
    latched_count: Option<u16>,
    /// Status byte latched by a read-back command.
    latched_status: Option<u8>,
    /// CLK tick at which the CR is (or will be) loaded into the CE; `None` = NULL COUNT until a
    /// trigger.
    load_tick: Option<i64>,
    run: Run,
}

impl Counter {
    fn new(gate: bool) -> Counter {
        Counter {
            mode: 0,
            mode_bits: 0,
            rw: 3,
            bcd: false,
            gate,
            cr: 65536,
            cr_valid: false,
            write_msb_next: false,
            write_lsb: 0,
            read_msb_next: false,
            latched_count: None,
            latched_status: None,
            load_tick: Some(0),
            run: Run::Held { count: 0, out: true },
        }
    }

    fn modulus(&self) -> i64 {
        if self.bcd {
            10_000
        } else {
            65_536
        }
    }

    /// The (start, n) of the periodic timeline in force at tick `t`.
    fn periodic_at(start: i64, n: u32, next: Option<Switch>, t: i64) -> (i64, u32) {
        match next {
            Some(s) if t >= s.at => (s.start, s.n),
            _ => (start, n),
        }
    }

    /// Length of mode 3's high half-period.
    fn high_half(n: u32) -> i64 {
        (i64::from(n) + 1) / 2
    }

    /// Apply a pending mode 2/3 reload that has happened by tick `t`.
    fn normalize(&mut self, t: i64) {
        if let Run::Periodic { next: Some(s), .. } = self.run {
            if t >= s.at {
                self.run = Run::Periodic { start: s.start, n: s.n, next: None };
            }
        }
    }

    /// CE value at tick `t`, binary, 0..modulus.
    fn count_at(&self, t: i64) -> u32 {
        let m = self.modulus();
        let v = match self.run {
            Run::Held { count, .. } => i64::from(count),
            Run::Frozen { c0, .. } => i64::from(c0),
            Run::OneShot { start, c0, .. } => i64::from(c0) - (t - start).max(0),
            Run::Periodic { start, n, next } => {
                let (start, n) = Self::periodic_at(start, n, next, t);
                let n64 = i64::from(n.max(1));
                let p = (t - start).max(0) % n64;
                if self.mode == 3 && n >= 2 {
                    let h = Self::high_half(n);
                    let odd = n64 & 1;
                    let (k, low) = if p < h { (p, false) } else { (p - h, true) };
                    if k == 0 {
                        n64
                    } else if low {
                        n64 - odd - 2 * k
                    } else {
                        n64 + odd - 2 * k
                    }
                } else {
                    n64 - p
                }
            }
        };
        v.rem_euclid(m) as u32
    }

    /// OUT level at tick `t`.
    fn out_at(&self, t: i64) -> bool {
        let strobe = matches!(self.mode, 4 | 5);
        match self.run {
            Run::Held { out, .. } => out,
            Run::Frozen { done, .. } => strobe || done,
            Run::OneShot { start, c0, done } => {
                let d = (t - start).max(0);
                if strobe {
                    done || d != i64::from(c0)
                } else {
                    done || d >= i64::from(c0)
                }
            }
            Run::Periodic { start, n, next } => {
                let (start, n) = Self::periodic_at(start, n, next, t);
                if n < 2 {
                    return true;
                }
                let p = (t - start).max(0) % i64::from(n);
                if self.mode == 3 {
                    p < Self::high_half(n)
                } else {
                    p != i64::from(n) - 1
                }
            }
        }
    }

    /// NULL COUNT at tick `t`: a count was written to the CR and not yet loaded into the CE.
    fn null_count_at(&self, t: i64) -> bool {
        match self.load_tick {
            None => true,
            Some(x) => t < x,
        }
    }

    /// First rising edge of OUT strictly after tick `x` (with the current programming).
    fn next_rising_after(&self, x: i64) -> Option<i64> {
        fn periodic(start: i64, n: u32, x: i64) -> Option<i64> {
            if n < 2 {
                return None;
            }
            let n = i64::from(n);
            Some(if x < start { start + n } else { start + ((x - start) / n + 1) * n })
        }
        match self.run {
            Run::Held { .. } | Run::Frozen { .. } => None,
            Run::OneShot { start, c0, done } => {
                if done {
                    return None;
                }
                let e = start + i64::from(c0) + i64::from(matches!(self.mode, 4 | 5));
                (e > x).then_some(e)
            }
            Run::Periodic { start, n, next } => match next {
                Some(s) if x < s.at => match periodic(start, n, x) {
                    Some(e) if e <= s.at => Some(e),
                    _ => periodic(s.start, s.n, s.at),
                },
                Some(s) => periodic(s.start, s.n, x),
                None => periodic(start, n, x),
            },
        }
    }

    fn mark_loaded(&mut self, t: i64) {
        if self.load_tick.is_none_or(|x| x > t) {
            self.load_tick = Some(t);
        }
    }

    /// Control word for this counter (not a latch command).
    fn write_control(&mut self, t: i64, v: u8) {
        let count = self.count_at(t);
        self.rw = (v >> 4) & 3;
        self.mode_bits = (v >> 1) & 7;
        self.mode = if self.mode_bits >= 6 { self.mode_bits - 4 } else { self.mode_bits };
        self.bcd = v & 1 != 0;
        self.cr_valid = false;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latched_count = None;
        self.latched_status = None;
        self.load_tick = None;
        let count = (i64::from(count) % self.modulus()) as u32;
        self.run = Run::Held { count, out: self.mode != 0 };
    }

    /// A data-port write.
    fn write_count_byte(&mut self, t: i64, b: u8) {
        self.normalize(t);
        match self.rw {
            1 => self.load_count(t, u16::from(b)),
            2 => self.load_count(t, u16::from(b) << 8),
            _ => {
                if self.write_msb_next {
                    self.write_msb_next = false;
                    self.load_count(t, u16::from(self.write_lsb) | (u16::from(b) << 8));
                } else {
                    self.write_msb_next = true;
                    self.write_lsb = b;
                    if self.mode == 0 {
                        // Mode 0: writing the first byte disables counting and sets OUT low.
                        self.run = Run::Held { count: self.count_at(t), out: false };
                    }
                }
            }
        }
    }

    /// A complete count `raw` was written to the CR.
    fn load_count(&mut self, t: i64, raw: u16) {
        let m = self.modulus() as u32;
        let mut n = if self.bcd { from_bcd(raw) % m } else { u32::from(raw) };
        if n == 0 {
            n = m;
        }
        self.cr = n;
        self.cr_valid = true;
        match self.mode {
            0 | 4 => {
                self.run = if self.gate {
                    Run::OneShot { start: t, c0: n, done: false }
                } else {
                    Run::Frozen { c0: n, done: false }
                };
                self.load_tick = Some(t);
            }
            1 | 5 => {
                // Loaded by the next GATE trigger.
                self.load_tick = None;
            }
            _ => match self.run {
                Run::Periodic { start, n: old, .. } if self.gate => {
                    let old64 = i64::from(old.max(1));
                    let p = (t - start).max(0) % old64;
                    let (at, new_start) = if self.mode == 3 && old >= 2 {
                        let h = Self::high_half(old);
                        if p < h {
                            // End of the high half: the new count starts with its low half.
                            let at = t - p + h;
                            (at, at - Self::high_half(n))
                        } else {
                            let at = t - p + old64;
                            (at, at)
                        }
                    } else {
                        let at = t - p + old64;
                        (at, at)
                    };
                    self.run =
                        Run::Periodic { start, n: old, next: Some(Switch { at, start: new_start, n }) };
                    self.load_tick = Some(at);
                }
                _ if self.gate => {
                    self.run = Run::Periodic { start: t, n, next: None };
                    self.load_tick = Some(t);
                }
                _ => {
                    self.run = Run::Held { count: n % m, out: true };
                    self.load_tick = Some(t);
                }
            },
        }
    }

    fn set_gate(&mut self, t: i64, level: bool) {
        if level == self.gate {
            return;
        }
        self.normalize(t);
        self.gate = level;
        let m = self.modulus();
        match self.mode {
            0 | 4 => match self.run {
                Run::OneShot { start, c0, done } if !level => {
                    let d = (t - start).max(0);
                    let c = i64::from(c0);
                    self.run = if !done && d < c {
                        Run::Frozen { c0: (c - d) as u32, done: false }
                    } else {
                        let w = (c - d).rem_euclid(m);
                        Run::Frozen { c0: if w == 0 { m as u32 } else { w as u32 }, done: true }
                    };
                }
                Run::Frozen { c0, done } if level => {
                    self.run = Run::OneShot { start: t, c0, done };
                }
                _ => {}
            },
            1 | 5 => {
                if level && self.cr_valid {
                    self.run = Run::OneShot { start: t, c0: self.cr, done: false };
                    self.mark_loaded(t);
                }
            }
            _ => {
                if !level {
                    self.run = Run::Held { count: self.count_at(t), out: true };
                } else if self.cr_valid {
                    self.run = Run::Periodic { start: t, n: self.cr, next: None };
                    self.mark_loaded(t);
                }
            }
        }
    }

    /// Counter latch command (or the COUNT part of a read-back): latch the CE into the OL unless
    /// a previous latch has not been read yet.
    fn latch_count(&mut self, t: i64) {
        if self.latched_count.is_none() {
            self.latched_count = Some(self.raw_count(t));
        }
    }

    /// STATUS part of a read-back command.
    fn latch_status(&mut self, t: i64) {
        if self.latched_status.is_none() {
            self.latched_status = Some(self.status_at(t));
        }
    }

    /// Status byte: OUT, NULL COUNT, RW1 RW0, M2 M1 M0, BCD.
    fn status_at(&self, t: i64) -> u8 {
        (u8::from(self.out_at(t)) << 7)
            | (u8::from(self.null_count_at(t)) << 6)
            | (self.rw << 4)
            | (self.mode_bits << 1)
            | u8::from(self.bcd)
    }

    /// The CE value as the guest reads it (BCD-encoded in BCD mode).
    fn raw_count(&self, t: i64) -> u16 {
        let c = self.count_at(t);
        if self.bcd {
            to_bcd(c)
        } else {
            c as u16
        }
    }

    /// A data-port read.
    fn read_byte(&mut self, t: i64) -> u8 {
        if let Some(s) = self.latched_status.take() {
            return s;
        }
        let (value, latched) = match self.latched_count {
            Some(v) => (v, true),
            None => (self.raw_count(t), false),
        };
        let (byte, last) = match self.rw {
            1 => (value as u8, true),
            2 => ((value >> 8) as u8, true),
            _ => {
                if self.read_msb_next {
                    self.read_msb_next = false;
                    ((value >> 8) as u8, true)
                } else {
                    self.read_msb_next = true;
                    (value as u8, false)
                }
            }
        };
        if latched && last {
            self.latched_count = None;
        }
        byte
    }
}

/// The Intel 8254 PIT with the PC's port 0x61 (82C54 datasheet; IBM PC/AT technical reference,
/// port 061h). Counters are clocked at [`PIT_HZ`]; GATE0 and GATE1 are tied high, GATE2 is port
/// 0x61 bit 0. Ports (absolute port number as `offset`): 0x40–0x42 counters, 0x43 control word,
/// 0x61 port B.
#[derive(Debug, Clone)]
pub struct Pit {
    counters: [Counter; 3],
    /// Port 0x61 bits 3–0 as written (bit 0 GATE2, bit 1 speaker data enable, bits 2–3 parity
    /// and I/O channel check disables).
    port_b: u8,
    /// CLK tick up to which OUT0's rising edges have been recorded.
    edge_checked: i64,
    /// Virtual time (ns) of the first recorded edge not yet taken.
    edge_pending: Option<Nanos>,
}

impl Default for Pit {
    fn default() -> Self {
        Pit::new()
    }
}

impl Pit {
    /// A PIT after power-on: every counter in mode 0, binary, LSB-then-MSB, no count written,
    /// OUT high; GATE2 low (port 0x61 = 0). 82C54 datasheet, "Operational Description".
    pub fn new() -> Pit {
        Pit {
            counters: [Counter::new(true), Counter::new(true), Counter::new(false)],
            port_b: 0,
            edge_checked: 0,
            edge_pending: None,
        }
    }

    /// Level of counter 0's OUT (IRQ 0) at virtual time `now` (ns). 82C54 datasheet, OUT.
    pub fn irq0_level(&self, now: Nanos) -> bool {
        self.counters[0].out_at(ticks_at(now))
    }

    /// Level of OUT of `counter` (0–2; others read false) at virtual time `now` (ns).
    /// 82C54 datasheet, OUT.
    pub fn out_level(&self, counter: u8, now: Nanos) -> bool {
        self.counters.get(usize::from(counter)).is_some_and(|c| c.out_at(ticks_at(now)))
    }

    /// True once if at least one rising edge of OUT0 happened since the previous call (edges
    /// recorded by [`Device::tick`] or by port writes; several edges between two calls
    /// coalesce, as they would in the PIC's edge-triggered IRR). The machine then pulses IRQ 0.
    /// 82C54 datasheet, OUT; 8259A datasheet, edge-triggered mode.
    pub fn take_irq0_edge(&mut self) -> bool {
        self.edge_pending.take().is_some()
    }

    /// Record the rising edges of OUT0 up to tick `t`.
    fn scan_edges(&mut self, now: Nanos, t: i64) {
        if t > self.edge_checked {
            if self.counters[0].next_rising_after(self.edge_checked).is_some_and(|e| e <= t) {
                self.edge_pending.get_or_insert(now);
            }
            self.edge_checked = t;
        }
        self.counters[0].normalize(t);
    }

    fn write_control(&mut self, t: i64, v: u8) {
        let sc = v >> 6;
        if sc == 3 {
            // Read-back command: bit 5 = 0 latches COUNT, bit 4 = 0 latches STATUS,
            // bits 3–1 select counters 2, 1, 0.
            for (i, c) in self.counters.iter_mut().enumerate() {
                if v & (2 << i) == 0 {
                    continue;
                }
                if v & 0x20 == 0 {
                    c.latch_count(t);
                }
                if v & 0x10 == 0 {
                    c.latch_status(t);
                }
            }
            return;
        }
        let c = &mut self.counters[usize::from(sc)];
        if (v >> 4) & 3 == 0 {
            c.latch_count(t);
        } else {
            c.write_control(t, v);
        }
    }

    fn port_b_value(&self, now: Nanos) -> u8 {
        let refresh = (now / REFRESH_TOGGLE_NS) & 1 == 1;
        (self.port_b & 0x0F)
            | (u8::from(refresh) << 4)
            | (u8::from(self.counters[2].out_at(ticks_at(now))) << 5)
    }

    fn read_port(&mut self, now: Nanos, port: u64) -> u8 {
        let t = ticks_at(now);
        match port {
            0x40..=0x42 => self.counters[(port - 0x40) as usize].read_byte(t),
            0x61 => self.port_b_value(now),
            _ => 0xFF,
        }
    }

    fn write_port(&mut self, now: Nanos, port: u64, v: u8) {
        let t = ticks_at(now);
        // Account for OUT0 edges under the old programming first.
        self.scan_edges(now, t);
        let before = self.counters[0].out_at(t);
        match port {
            0x40..=0x42 => self.counters[(port - 0x40) as usize].write_count_byte(t, v),
            0x43 => self.write_control(t, v),
            0x61 => {
                self.port_b = v & 0x0F;
                self.counters[2].set_gate(t, v & 1 != 0);
            }
            _ => return,
        }
        if !before && self.counters[0].out_at(t) {
            // E.g. a mode 2/3/4 control word sets OUT0 high at once.
            self.edge_pending.get_or_insert(now);
        }
    }
}

impl Device for Pit {
    /// `offset` is the absolute port number. The first byte gets the register; extra bytes 0xFF.
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        data.fill(0xFF);
        data[0] = self.read_port(now, offset);
    }

    /// `offset` is the absolute port number. Only the first byte is written.
    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        if let Some(&v) = data.first() {
            self.write_port(now, offset, v);
        }
    }

    /// Time of the next rising edge of OUT0 (IRQ 0), or of an edge recorded but not yet taken
    /// with [`Pit::take_irq0_edge`]; `None` if counter 0 will produce no edge.
    fn next_deadline(&self) -> Option<Nanos> {
        if let Some(ns) = self.edge_pending {
            return Some(ns);
        }
        self.counters[0].next_rising_after(self.edge_checked).map(ns_of_tick)
    }

    /// Record OUT0's rising edges up to `now`.
    fn tick(&mut self, now: Nanos) {
        self.scan_edges(now, ticks_at(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Virtual time of CLK tick `t`.
    fn at(t: i64) -> Nanos {
        ns_of_tick(t)
    }

    fn out(p: &mut Pit, now: Nanos, port: u64, v: u8) {
        p.write(now, port, &[v]);
    }

    fn inb(p: &mut Pit, now: Nanos, port: u64) -> u8 {
        let mut b = [0u8];
        p.read(now, port, &mut b);
        b[0]
    }

    fn latched_count(p: &mut Pit, now: Nanos, ctr: u8) -> u16 {
        out(p, now, 0x43, ctr << 6);
        let lo = inb(p, now, 0x40 + u64::from(ctr));
        let hi = inb(p, now, 0x40 + u64::from(ctr));
        u16::from(lo) | (u16::from(hi) << 8)
    }

    #[test]
    fn tick_conversion_is_exact() {
        assert_eq!(ticks_at(1_000_000_000), 1_193_182);
        assert_eq!(ticks_at(837), 0);
        assert_eq!(ticks_at(839), 1);
        for t in [1i64, 2, 3, 1000, 65536, 1_193_182, 123_456_789] {
            assert_eq!(ticks_at(ns_of_tick(t)), t);
            assert_eq!(ticks_at(ns_of_tick(t) - 1), t - 1);
        }
    }

    #[test]
    fn mode0_countdown_via_latch() {
        let mut p = Pit::new();
        out(&mut p, at(100), 0x43, 0x30); // counter 0, LSB/MSB, mode 0, binary
        assert!(!p.irq0_level(at(100)), "mode 0: OUT low after the control word");
        out(&mut p, at(100), 0x40, 0x00);
        out(&mut p, at(100), 0x40, 0x10); // 0x1000
        assert_eq!(latched_count(&mut p, at(100), 0), 0x1000);
        assert_eq!(latched_count(&mut p, at(100 + 0x234), 0), 0x1000 - 0x234);
        // The latch holds its value until both bytes are read.
        out(&mut p, at(200), 0x43, 0x00);
        out(&mut p, at(300), 0x43, 0x00); // ignored: already latched
        assert_eq!(inb(&mut p, at(900), 0x40), (0x1000u16 - 100) as u8);
        assert_eq!(inb(&mut p, at(900), 0x40), ((0x1000u16 - 100) >> 8) as u8);
        // Terminal count: OUT rises and the deadline points at it.
        assert_eq!(p.next_deadline(), Some(at(100 + 0x1000)));
        assert!(!p.irq0_level(at(100 + 0x1000) - 1));
        assert!(p.irq0_level(at(100 + 0x1000)));
        p.tick(at(100 + 0x1000));
        assert!(p.take_irq0_edge());
        assert!(!p.take_irq0_edge());
        assert_eq!(p.next_deadline(), None);
        // The counter wraps and keeps counting.
        assert_eq!(latched_count(&mut p, at(100 + 0x1000 + 5), 0), 0u16.wrapping_sub(5));
    }

    #[test]
    fn mode0_first_byte_stops_counting() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x30);
        out(&mut p, 0, 0x40, 0x10);
        out(&mut p, 0, 0x40, 0x00);
        assert!(p.irq0_level(at(0x10)));
        out(&mut p, at(0x20), 0x40, 0x50);
        assert!(!p.irq0_level(at(0x20)));
        assert!(p.take_irq0_edge(), "the terminal count at 0x10 was recorded by the write");
        assert_eq!(p.next_deadline(), None);
        out(&mut p, at(0x30), 0x40, 0x00);
        assert_eq!(p.next_deadline(), Some(at(0x30 + 0x50)));
    }

    #[test]
    fn mode2_rate_generator_edges_and_deadlines() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x34); // counter 0, LSB/MSB, mode 2
        out(&mut p, 0, 0x40, 0x9C);
        out(&mut p, 0, 0x40, 0x2E); // 11932 ≈ 100 Hz
        let n = 11932i64;
        assert!(p.irq0_level(0));
        // OUT low for exactly one clock when the count reaches 1.
        assert!(p.irq0_level(at(n - 2)));
        assert!(!p.irq0_level(at(n - 1)));
        assert!(p.irq0_level(at(n)));
        assert_eq!(latched_count(&mut p, at(n - 1), 0), 1);
        assert_eq!(latched_count(&mut p, at(n), 0), n as u16);
        for k in 1..=5 {
            let d = p.next_deadline().expect("periodic");
            assert_eq!(d, at(k * n));
            p.tick(d);
            assert!(p.take_irq0_edge());
            assert!(!p.take_irq0_edge());
        }
        // A late tick coalesces edges.
        p.tick(at(10 * n + 3));
        assert!(p.take_irq0_edge());
        assert!(!p.take_irq0_edge());
        assert_eq!(p.next_deadline(), Some(at(11 * n)));
        // A new count takes effect at the end of the current period.
        out(&mut p, at(11 * n - 100), 0x40, 100);
        out(&mut p, at(11 * n - 100), 0x40, 0);
        out(&mut p, at(11 * n - 100), 0x43, 0xE2); // read-back status of counter 0
        let status = inb(&mut p, at(11 * n - 100), 0x40);
        assert_eq!(status & 0x40, 0x40, "NULL COUNT until the reload");
        assert_eq!(p.next_deadline(), Some(at(11 * n)));
        p.tick(at(11 * n));
        assert!(p.take_irq0_edge());
        assert_eq!(p.next_deadline(), Some(at(11 * n + 100)));
        out(&mut p, at(11 * n), 0x43, 0xE2);
        assert_eq!(inb(&mut p, at(11 * n), 0x40) & 0x40, 0);
    }

    #[test]
    fn mode3_square_wave() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x36); // counter 0, LSB/MSB, mode 3
        out(&mut p, 0, 0x40, 10);
        out(&mut p, 0, 0x40, 0);
        for t in 0..5 {
            assert!(p.irq0_level(at(t)), "high at {t}");
        }
        for t in 5..10 {
            assert!(!p.irq0_level(at(t)), "low at {t}");
        }
        assert!(p.irq0_level(at(10)));
        // Even count: decrements by two.
        assert_eq!(latched_count(&mut p, at(1), 0), 8);
        assert_eq!(latched_count(&mut p, at(6), 0), 8);
        assert_eq!(p.next_deadline(), Some(at(10)));
        p.tick(at(10));
        assert!(p.take_irq0_edge());
        assert_eq!(p.next_deadline(), Some(at(20)));
        // Odd count 7: high for 4 clocks, low for 3.
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x16); // LSB only, mode 3
        out(&mut p, 0, 0x40, 7);
        let levels: Vec<bool> = (0..14).map(|t| p.irq0_level(at(t))).collect();
        let one = [true, true, true, true, false, false, false];
        assert_eq!(levels, [one, one].concat());
        // 0 means 65536: the default 18.2 Hz tick.
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x36);
        out(&mut p, 0, 0x40, 0);
        out(&mut p, 0, 0x40, 0);
        assert_eq!(p.next_deadline(), Some(at(65536)));
        assert!(!p.irq0_level(at(32768)));
    }

    #[test]
    fn mode4_strobe_edge_after_terminal_count() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x38); // Linux one-shot: mode 4
        out(&mut p, at(50), 0x40, 20);
        out(&mut p, at(50), 0x40, 0);
        assert!(p.irq0_level(at(69)));
        assert!(!p.irq0_level(at(70)));
        assert!(p.irq0_level(at(71)));
        assert_eq!(p.next_deadline(), Some(at(71)));
        p.tick(at(71));
        assert!(p.take_irq0_edge());
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn bcd_counting() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x31); // mode 0, BCD
        out(&mut p, 0, 0x40, 0x00);
        out(&mut p, 0, 0x40, 0x10); // 1000 decimal
        assert_eq!(latched_count(&mut p, at(1), 0), 0x0999);
        assert_eq!(p.next_deadline(), Some(at(1000)));
        // 0 means 10000 in BCD.
        out(&mut p, 0, 0x43, 0x35); // mode 2, BCD: OUT0 rises at once
        assert!(p.take_irq0_edge());
        out(&mut p, 0, 0x40, 0);
        out(&mut p, 0, 0x40, 0);
        assert_eq!(latched_count(&mut p, at(1), 0), 0x9999);
        assert_eq!(p.next_deadline(), Some(at(10000)));
    }

    #[test]
    fn access_modes_and_flip_flops() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x64); // counter 1, MSB only, mode 2
        out(&mut p, 0, 0x41, 0x12);
        assert_eq!(inb(&mut p, 0, 0x41), 0x12);
        out(&mut p, 0, 0x43, 0x54); // counter 1, LSB only, mode 2
        out(&mut p, 0, 0x41, 0x80);
        assert_eq!(inb(&mut p, at(0x10), 0x41), 0x70);
        // LSB-then-MSB unlatched reads alternate.
        out(&mut p, 0, 0x43, 0x74);
        out(&mut p, 0, 0x41, 0x34);
        out(&mut p, 0, 0x41, 0x12);
        assert_eq!(inb(&mut p, 0, 0x41), 0x34);
        assert_eq!(inb(&mut p, 0, 0x41), 0x12);
        assert_eq!(inb(&mut p, 0, 0x41), 0x34);
    }

    #[test]
    fn read_back_status_and_count() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0xB0); // counter 2, LSB/MSB, mode 0
                                    // Status: OUT low, NULL COUNT, RW = 3, mode 0, binary.
        out(&mut p, 0, 0x43, 0xE8); // read-back status of counter 2
        assert_eq!(inb(&mut p, 0, 0x42), 0x70);
        out(&mut p, 0, 0x42, 0x00);
        out(&mut p, 0, 0x42, 0x01); // 256, GATE2 low: loaded but not counting
        out(&mut p, at(10), 0x43, 0xC8); // latch count and status of counter 2
        assert_eq!(inb(&mut p, at(50), 0x42), 0x30, "status first: NULL COUNT clear");
        assert_eq!(inb(&mut p, at(50), 0x42), 0x00);
        assert_eq!(inb(&mut p, at(50), 0x42), 0x01);
        // Enable GATE2: counting starts.
        out(&mut p, at(100), 0x61, 0x01);
        out(&mut p, at(110), 0x43, 0xD8); // latch count only
        assert_eq!(inb(&mut p, at(500), 0x42), 246);
        assert_eq!(inb(&mut p, at(500), 0x42), 0);
        // Read-back of several counters at once, with mode bits 6 → mode 2.
        out(&mut p, 0, 0x43, 0x3C); // counter 0, LSB/MSB, mode "6" (= 2), binary
        out(&mut p, 0, 0x43, 0xE2);
        assert_eq!(inb(&mut p, 0, 0x40), 0xFC, "OUT high, NULL COUNT, RW 3, M = 6");
    }

    #[test]
    fn port61_out2_follows_gate() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0xB6); // counter 2, mode 3 (speaker)
        out(&mut p, 0, 0x42, 0x00);
        out(&mut p, 0, 0x42, 0x01); // 256
                                    // GATE2 low: counting stopped, OUT2 high.
        assert_eq!(inb(&mut p, at(200), 0x61) & 0x20, 0x20);
        out(&mut p, at(1000), 0x61, 0x03);
        assert_eq!(inb(&mut p, at(1000), 0x61) & 0x03, 0x03);
        assert_eq!(inb(&mut p, at(1000 + 127), 0x61) & 0x20, 0x20);
        assert_eq!(inb(&mut p, at(1000 + 128), 0x61) & 0x20, 0x00);
        assert_eq!(inb(&mut p, at(1000 + 256), 0x61) & 0x20, 0x20);
        // Dropping the gate forces OUT high and stops counting.
        out(&mut p, at(1000 + 300), 0x61, 0x00);
        assert_eq!(inb(&mut p, at(1000 + 300), 0x61) & 0x23, 0x20);
        // Mode 0 one-shot on counter 2 (the classic calibration loop).
        out(&mut p, at(2000), 0x43, 0xB0);
        out(&mut p, at(2000), 0x42, 0xFF);
        out(&mut p, at(2000), 0x42, 0xFF);
        out(&mut p, at(2000), 0x61, 0x01);
        assert_eq!(inb(&mut p, at(2000 + 65534), 0x61) & 0x20, 0);
        assert_eq!(inb(&mut p, at(2000 + 65535), 0x61) & 0x20, 0x20);
        // Counter 2 does not drive IRQ 0.
        assert_eq!(p.next_deadline(), None);
    }

    #[test]
    fn mode1_retriggerable_one_shot_on_gate2() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x92); // counter 2, LSB, mode 1
        out(&mut p, 0, 0x42, 50);
        assert!(p.out_level(2, at(10)), "no trigger yet");
        out(&mut p, at(100), 0x61, 0x01);
        assert!(!p.out_level(2, at(100)));
        assert!(!p.out_level(2, at(149)));
        assert!(p.out_level(2, at(150)));
        // Retrigger.
        out(&mut p, at(160), 0x61, 0x00);
        out(&mut p, at(170), 0x61, 0x01);
        assert!(!p.out_level(2, at(219)));
        assert!(p.out_level(2, at(220)));
    }

    #[test]
    fn control_word_raising_out0_is_an_edge() {
        let mut p = Pit::new();
        out(&mut p, 0, 0x43, 0x30); // mode 0: OUT low
        assert!(!p.take_irq0_edge());
        out(&mut p, at(5), 0x43, 0x34); // mode 2: OUT high at once
        assert!(p.take_irq0_edge());
    }

    #[test]
    fn refresh_toggle() {
        let mut p = Pit::new();
        let a = inb(&mut p, 0, 0x61) & 0x10;
        let b = inb(&mut p, REFRESH_TOGGLE_NS, 0x61) & 0x10;
        assert_ne!(a, b);
    }

    #[test]
    fn odd_accesses_never_panic() {
        let mut p = Pit::new();
        let mut buf = [0u8; 4];
        p.read(0, 0x40, &mut buf);
        assert_eq!(&buf[1..], &[0xFF; 3]);
        p.read(0, 0x43, &mut buf);
        assert_eq!(buf, [0xFF; 4]);
        p.read(0, 0x40, &mut []);
        p.write(0, 0x40, &[]);
        let mut now = 0;
        for v in 0..=255u8 {
            for port in [0x40u64, 0x41, 0x42, 0x43, 0x61, 0x99] {
                now += 977;
                p.write(now, port, &[v]);
                p.write(now, port, &[1]);
                p.write(now, port, &[0]);
                p.read(now, port, &mut buf);
                p.tick(now);
                let _ = p.next_deadline();
                let _ = p.take_irq0_edge();
            }
        }
        p.tick(u64::MAX);
        let _ = p.next_deadline();
        let _ = p.irq0_level(u64::MAX);
        p.read(u64::MAX, 0x61, &mut buf);
        p.write(u64::MAX, 0x43, &[0x34]);
        p.write(u64::MAX, 0x40, &[0x02]);
        p.write(u64::MAX, 0x40, &[0x00]);
        let _ = p.next_deadline();
    }
}
