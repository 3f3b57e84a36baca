//! Motorola MC146818A real-time clock with its 128 bytes of CMOS RAM (ports 0x70/0x71).
//!
//! Port 0x70 is the index register (bit 7 is the PC's NMI-disable bit: stored, not acted on),
//! port 0x71 the data register. Registers 0x00–0x09 are the clock and alarm, 0x0A–0x0D are
//! registers A–D, the rest is battery-backed RAM; register 0x32 is the PC's century byte.
//! Names follow the MC146818A datasheet: register A (UIP, DV2–DV0, RS3–RS0), register B (SET,
//! PIE, AIE, UIE, SQWE, DM, 24/12, DSE), register C (IRQF, PF, AF, UF), register D (VRT).
//!
//! # Time
//!
//! The date is read from the host once ([`Rtc::new`]); afterwards it advances only with virtual
//! time `now`. The divider chain is modelled as a phase: update cycles happen every second at
//! fixed virtual instants, and the periodic interrupt is derived from the same 32.768 kHz chain
//! with exact integer arithmetic. The update cycle itself is instantaneous: UIP is set during the
//! 244 µs before it, and the time registers change at the update instant.
//!
//! # Port addressing
//!
//! The machine registers one [`Rtc`] at ports 0x70–0x71 and passes the **absolute port number**
//! as `offset` to [`Device::read`] / [`Device::write`]. Registers are 8 bits: a wider access acts
//! on its first byte only (the port in `offset`); extra bytes of a read return 0xFF and extra
//! bytes of a write are ignored. Port 0x70 is write-only and reads 0xFF, as do unknown ports.
//!
//! # IRQ 8
//!
//! [`Rtc::irq_level`] is the level of the IRQ line (high while IRQF is set; the chip's IRQ pin
//! is active low, the PC inverts it). After every [`Device::tick`] and every port access the
//! machine should call `pic.set_irq(8, rtc.irq_level())`.
//!
//! # Simplifications
//!
//! * The time registers are computed from a seconds counter, so changing DM or 24/12 in
//!   register B re-formats the time at once (the real chip would keep the stored bytes).
//!   Writes to the time registers replace one field of the current date and move the clock by
//!   the difference; out-of-range values carry over (e.g. 61 seconds) or are clamped (month).
//!   Writing the day of week stores an offset, as it is independent of the date on the chip.
//! * Any divider setting other than DV2–DV0 = 11x (divider reset) runs the clock at the
//!   32.768 kHz rate. After a divider reset ends, the first update comes 500 ms later.
//! * DSE (daylight saving) and SQWE (square-wave output) are stored and have no effect.
//! * The years 0000–9999 are representable; the clock stops at the ends of that range.

use crate::{Device, Nanos};

/// Index (address) port; bit 7 is the PC's NMI disable. IBM PC/AT technical reference, port 070h.
pub const RTC_INDEX_PORT: u16 = 0x70;
/// Data port: reads and writes the register selected by the index. MC146818A datasheet, AD0–AD7.
pub const RTC_DATA_PORT: u16 = 0x71;

/// Register A index (UIP, DV2–DV0, RS3–RS0). MC146818A datasheet, register A.
pub const REG_A: u8 = 0x0A;
/// Register B index (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE). MC146818A datasheet, register B.
pub const REG_B: u8 = 0x0B;
/// Register C index (IRQF, PF, AF, UF; read-only, cleared by reading). MC146818A datasheet.
pub const REG_C: u8 = 0x0C;
/// Register D index (VRT; read-only). MC146818A datasheet, register D.
pub const REG_D: u8 = 0x0D;
/// Century byte (BCD or binary per DM, like the year) in CMOS RAM. IBM PC/AT CMOS map, 032h.
pub const REG_CENTURY: u8 = 0x32;

/// Register A: update in progress. MC146818A datasheet, register A, UIP.
pub const REG_A_UIP: u8 = 0x80;
/// Register B: SET, update transfers inhibited. MC146818A datasheet, register B.
pub const REG_B_SET: u8 = 0x80;
/// Register B: periodic interrupt enable. MC146818A datasheet, register B.
pub const REG_B_PIE: u8 = 0x40;
/// Register B: alarm interrupt enable. MC146818A datasheet, register B.
pub const REG_B_AIE: u8 = 0x20;
/// Register B: update-ended interrupt enable. MC146818A datasheet, register B.
pub const REG_B_UIE: u8 = 0x10;
/// Register B: square-wave enable (no effect here). MC146818A datasheet, register B.
pub const REG_B_SQWE: u8 = 0x08;
/// Register B: data mode, 1 = binary, 0 = BCD. MC146818A datasheet, register B.
pub const REG_B_DM: u8 = 0x04;
/// Register B: 1 = 24-hour mode, 0 = 12-hour mode (PM = hour bit 7). MC146818A datasheet.
pub const REG_B_24H: u8 = 0x02;
/// Register B: daylight saving enable (ignored). MC146818A datasheet, register B.
pub const REG_B_DSE: u8 = 0x01;
/// Register C: interrupt request flag. MC146818A datasheet, register C.
pub const REG_C_IRQF: u8 = 0x80;
/// Register C: periodic interrupt flag. MC146818A datasheet, register C.
pub const REG_C_PF: u8 = 0x40;
/// Register C: alarm interrupt flag. MC146818A datasheet, register C.
pub const REG_C_AF: u8 = 0x20;
/// Register C: update-ended interrupt flag. MC146818A datasheet, register C.
pub const REG_C_UF: u8 = 0x10;
/// Register D: valid RAM and time (always set). MC146818A datasheet, register D.
pub const REG_D_VRT: u8 = 0x80;

/// Time from UIP rising to the update cycle, in ns (MC146818A datasheet, register A, t_BUC).
pub const UIP_LEAD_NS: i128 = 244_000;

const NS_PER_SEC: i128 = 1_000_000_000;
/// Frequency of the time base in Hz (DV2–DV0 = 010).
const TIME_BASE_HZ: i128 = 32_768;
const SECS_PER_DAY: i64 = 86_400;
/// 0000-01-01T00:00:00 as Unix time.
const MIN_SECS: i64 = -62_167_219_200;
/// 9999-12-31T23:59:59 as Unix time.
const MAX_SECS: i64 = 253_402_300_799;

/// Days since 1970-01-01 of the proleptic Gregorian date `y`-`m`-`d` (m in 1..=12; `d` may be
/// out of range and is then counted linearly).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Proleptic Gregorian (year, month 1–12, day 1–31) of day `z` since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A broken-down date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    year: i64,
    month: i64,
    day: i64,
    hour: i64,
    minute: i64,
    second: i64,
    /// 0 = Sunday.
    weekday: i64,
}

impl DateTime {
    fn from_unix(secs: i64) -> DateTime {
        let secs = secs.clamp(MIN_SECS, MAX_SECS);
        let days = secs.div_euclid(SECS_PER_DAY);
        let tod = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        DateTime {
            year,
            month,
            day,
            hour: tod / 3600,
            minute: tod / 60 % 60,
            second: tod % 60,
            weekday: (days + 4).rem_euclid(7),
        }
    }

    fn to_unix(self) -> i64 {
        let month = self.month.clamp(1, 12);
        let days = days_from_civil(self.year, month, self.day);
        (days * SECS_PER_DAY + self.hour * 3600 + self.minute * 60 + self.second).clamp(MIN_SECS, MAX_SECS)
    }
}

/// The MC146818A RTC and CMOS RAM of the PC (MC146818A datasheet; IBM PC/AT technical
/// reference, CMOS RAM map). Ports (absolute port number as `offset`): 0x70 index (bit 7 = NMI
/// disable), 0x71 data. IRQ 8 is [`Rtc::irq_level`].
#[derive(Debug, Clone)]
pub struct Rtc {
    /// CMOS RAM. Entries for the time registers, register C/D and the century are unused
    /// (computed); alarm registers, A (without UIP), B and the RAM are stored here.
    cmos: [u8; 128],
    /// Last value written to port 0x70 (index in bits 6–0, NMI disable in bit 7).
    index: u8,
    /// Virtual time (ns) at which the divider chain's phase is zero: update cycles happen at
    /// `div_origin + k` seconds, k ≥ 1.
    div_origin: i128,
    /// Clock value (Unix seconds) after update number `tod_k` (or the frozen value when not
    /// running).
    tod_secs: i64,
    /// Update number at which `tod_secs` was valid.
    tod_k: i128,
    /// Day-of-week offset written by the guest (0–6).
    weekday_adjust: i64,
    /// Register C flags PF, AF, UF (IRQF is computed).
    flags: u8,
    /// Virtual time (ns) up to which flag events have been processed.
    checked: i128,
}

impl Rtc {
    /// An RTC showing `start_unix_time_secs` (host time, read once by the machine) at virtual
    /// time 0, with register A = 0x26 (32.768 kHz time base, 1024 Hz periodic rate), register
    /// B = 0x02 (24-hour, BCD, no interrupts), register D = VRT and zeroed CMOS RAM. The first
    /// update cycle comes 1 s after virtual time 0. MC146818A datasheet, registers A–D.
    pub fn new(start_unix_time_secs: i64) -> Rtc {
        let mut cmos = [0u8; 128];
        cmos[usize::from(REG_A)] = 0x26;
        cmos[usize::from(REG_B)] = REG_B_24H;
        cmos[usize::from(REG_D)] = REG_D_VRT;
        Rtc {
            cmos,
            index: 0,
            div_origin: 0,
            tod_secs: start_unix_time_secs.clamp(MIN_SECS, MAX_SECS),
            tod_k: 0,
            weekday_adjust: 0,
            flags: 0,
            checked: 0,
        }
    }

    /// Level of the IRQ 8 line: true while register C's IRQF is set. MC146818A datasheet,
    /// register C, IRQF.
    pub fn irq_level(&self) -> bool {
        self.irqf()
    }

    /// True when the last index written to port 0x70 had bit 7 (NMI disable) set.
    /// IBM PC/AT technical reference, port 070h.
    pub fn nmi_disabled(&self) -> bool {
        self.index & 0x80 != 0
    }

    /// Store `value` in CMOS RAM byte `index` (bits 6–0 used) on the machine's behalf (not a
    /// guest access). The clock registers 0x00–0x0D and the century byte 0x32 are computed
    /// and ignore this. When a byte in 0x10–0x2D changes, the standard checksum at 0x2E (high)
    /// / 0x2F (low) is updated. IBM PC/AT technical reference, CMOS RAM map.
    pub fn set_cmos(&mut self, index: u8, value: u8) {
        let i = index & 0x7F;
        if i <= REG_D || i == REG_CENTURY {
            return;
        }
        self.cmos[usize::from(i)] = value;
        if (0x10..=0x2D).contains(&i) {
            let sum: u16 = self.cmos[0x10..=0x2D].iter().map(|&b| u16::from(b)).sum();
            self.cmos[0x2E] = (sum >> 8) as u8;
            self.cmos[0x2F] = sum as u8;
        }
    }

    /// CMOS RAM byte `index` (bits 6–0 used) as stored, without side effects (the computed
    /// clock registers read their stored backing byte, not the time). CMOS RAM map.
    pub fn cmos(&self, index: u8) -> u8 {
        self.cmos[usize::from(index & 0x7F)]
    }

    /// Fill the memory-size bytes for `below_4g` bytes of RAM below 4 GiB and `above_4g` bytes
    /// at and above 4 GiB, as SeaBIOS and QEMU expect: 0x15/0x16 base memory in KiB (at most
    /// 640), 0x17/0x18 and 0x30/0x31 extended memory in KiB above 1 MiB (at most 0xFFFF),
    /// 0x34/0x35 memory above 16 MiB in 64 KiB units (at most 0xFFFF), 0x5B–0x5D memory above
    /// 4 GiB in 64 KiB units (24 bits). All little-endian. CMOS RAM map (SeaBIOS `CMOS_MEM_*`).
    pub fn set_memory_layout(&mut self, below_4g: u64, above_4g: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        let base_kb = (below_4g / KIB).min(640);
        let ext_kb = (below_4g.saturating_sub(MIB) / KIB).min(0xFFFF);
        let over_16m = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xFFFF);
        let over_4g = (above_4g / (64 * KIB)).min(0xFF_FFFF);
        let mut put = |lo: u8, v: u64, bytes: u8| {
            for i in 0..bytes {
                self.set_cmos(lo + i, (v >> (8 * i)) as u8);
            }
        };
        put(0x15, base_kb, 2);
        put(0x17, ext_kb, 2);
        put(0x30, ext_kb, 2);
        put(0x34, over_16m, 2);
        put(0x5B, over_4g, 3);
    }

    /// Fill the memory-size bytes for `ram_bytes` of RAM contiguous from address 0 (the
    /// machine's current map has no PCI hole): the part below 4 GiB and the rest above it. See
    /// [`Rtc::set_memory_layout`]; a machine with a hole below 4 GiB should call that instead.
    pub fn set_memory_size(&mut self, ram_bytes: u64) {
        let below = ram_bytes.min(1 << 32);
        self.set_memory_layout(below, ram_bytes - below);
    }

    // ---- clock state ----------------------------------------------------------------------

    fn reg_a(&self) -> u8 {
        self.cmos[usize::from(REG_A)]
    }

    fn reg_b(&self) -> u8 {
        self.cmos[usize::from(REG_B)]
    }

    /// DV2–DV0 = 11x holds the divider chain in reset.
    fn divider_running(&self) -> bool {
        self.reg_a() & 0x60 != 0x60
    }

    /// Update cycles happen (divider running and SET clear).
    fn running(&self) -> bool {
        self.divider_running() && self.reg_b() & REG_B_SET == 0
    }

    /// Number of update instants in (div_origin, now].
    fn updates_at(&self, now: i128) -> i128 {
        (now - self.div_origin).div_euclid(NS_PER_SEC)
    }

    /// The clock (Unix seconds) at `now`.
    fn secs_at(&self, now: i128) -> i64 {
        if !self.running() {
            return self.tod_secs;
        }
        let n = self.updates_at(now) - self.tod_k;
        let s = i128::from(self.tod_secs) + n;
        s.clamp(i128::from(MIN_SECS), i128::from(MAX_SECS)) as i64
    }

    /// Re-anchor the clock at `now` with value `secs` (used around every state change).
    fn anchor(&mut self, now: i128, secs: i64) {
        self.tod_secs = secs.clamp(MIN_SECS, MAX_SECS);
        self.tod_k = self.updates_at(now);
    }

    /// Periodic interrupt period in 32.768 kHz ticks, per RS3–RS0 (0 = off; 1 and 2 act as 8
    /// and 9). MC146818A datasheet, Table 5 (32.768 kHz time base).
    fn periodic_ticks(&self) -> Option<i128> {
        let rs = self.reg_a() & 0x0F;
        let rs = match rs {
            0 => return None,
            1 => 8,
            2 => 9,
            r => r,
        };
        Some(1i128 << (rs - 1))
    }

    /// 32.768 kHz ticks of the divider chain at `now`.
    fn t32_at(&self, now: i128) -> i128 {
        ((now - self.div_origin) * TIME_BASE_HZ).div_euclid(NS_PER_SEC)
    }

    /// First virtual time at which `t32_at` reaches `j`.
    fn ns_of_t32(&self, j: i128) -> i128 {
        let x = j * NS_PER_SEC;
        self.div_origin - (-x).div_euclid(TIME_BASE_HZ)
    }

    /// Decode a clock byte per DM.
    fn decode(&self, v: u8) -> i64 {
        if self.reg_b() & REG_B_DM != 0 {
            i64::from(v)
        } else {
            i64::from(v >> 4) * 10 + i64::from(v & 0x0F)
        }
    }

    /// Encode 0–99 per DM.
    fn encode(&self, v: i64) -> u8 {
        let v = v.rem_euclid(100) as u8;
        if self.reg_b() & REG_B_DM != 0 {
            v
        } else {
            (v / 10) << 4 | (v % 10)
        }
    }

    /// Decode an hours byte (per DM and 24/12) to 0–23; may be out of range for bad input.
    fn decode_hour(&self, v: u8) -> i64 {
        if self.reg_b() & REG_B_24H != 0 {
            self.decode(v)
        } else {
            let h = self.decode(v & 0x7F);
            let pm = v & 0x80 != 0;
            if (1..=12).contains(&h) {
                h % 12 + if pm { 12 } else { 0 }
            } else {
                h + 24 // out of range: never matches an alarm, carries as hours when written
            }
        }
    }

    fn encode_hour(&self, h: i64) -> u8 {
        if self.reg_b() & REG_B_24H != 0 {
            self.encode(h)
        } else {
            let pm = h >= 12;
            let h12 = if h % 12 == 0 { 12 } else { h % 12 };
            self.encode(h12) | if pm { 0x80 } else { 0 }
        }
    }

    /// Seconds from time-of-day `tod` (0..86400) to the next time-of-day (strictly later, within
    /// one day) matching the alarm registers; `None` if they can never match. Alarm bytes with
    /// bits 7–6 = 11 are "don't care". MC146818A datasheet, "Alarm".
    fn next_alarm_delta(&self, tod: i64) -> Option<i64> {
        let field = |idx: usize, limit: i64, hour: bool| -> Option<Option<i64>> {
            let v = self.cmos[idx];
            if v & 0xC0 == 0xC0 {
                return Some(None);
            }
            let x = if hour { self.decode_hour(v) } else { self.decode(v) };
            if (0..limit).contains(&x) {
                Some(Some(x))
            } else {
                None
            }
        };
        let sec = field(0x01, 60, false)?;
        let min = field(0x03, 60, false)?;
        let hour = field(0x05, 24, true)?;
        let range = |f: Option<i64>, limit: i64| match f {
            Some(x) => x..x + 1,
            None => 0..limit,
        };
        for day in 0..2 {
            let base = day * SECS_PER_DAY;
            for h in range(hour, 24) {
                if base + h * 3600 + 3599 <= tod {
                    continue;
                }
                for m in range(min, 60) {
                    if base + h * 3600 + m * 60 + 59 <= tod {
                        continue;
                    }
                    for s in range(sec, 60) {
                        let t = base + h * 3600 + m * 60 + s;
                        if t > tod {
                            return Some(t - tod);
                        }
                    }
                }
            }
        }
        None
    }

    fn irqf(&self) -> bool {
        self.flags & self.reg_b() & (REG_C_PF | REG_C_AF | REG_C_UF) != 0
    }

    /// Set PF, UF and AF for the events in (checked, now].
    fn advance(&mut self, now: i128) {
        if now <= self.checked {
            return;
        }
        let a = self.checked;
        self.checked = now;
        if !self.divider_running() {
            return;
        }
        if let Some(p) = self.periodic_ticks() {
            if self.t32_at(now).div_euclid(p) > self.t32_at(a).div_euclid(p) {
                self.flags |= REG_C_PF;
            }
        }
        if self.running() {
            let (ua, ub) = (self.updates_at(a), self.updates_at(now));
            if ub > ua {
                self.flags |= REG_C_UF;
                let tod = self.secs_at(a).rem_euclid(SECS_PER_DAY);
                if self.next_alarm_delta(tod).is_some_and(|d| ua + i128::from(d) <= ub) {
                    self.flags |= REG_C_AF;
                }
            }
        }
    }

    /// UIP at `now`: within [`UIP_LEAD_NS`] before an update cycle.
    fn uip_at(&self, now: i128) -> bool {
        if !self.running() {
            return false;
        }
        let next = self.div_origin + (self.updates_at(now) + 1) * NS_PER_SEC;
        next - now <= UIP_LEAD_NS
    }

    // ---- register access ------------------------------------------------------------------

    fn read_register(&mut self, now: i128, idx: u8) -> u8 {
        self.advance(now);
        let dt = || DateTime::from_unix(self.secs_at(now));
        match idx {
            0x00 => self.encode(dt().second),
            0x02 => self.encode(dt().minute),
            0x04 => self.encode_hour(dt().hour),
            0x06 => self.encode((dt().weekday + self.weekday_adjust).rem_euclid(7) + 1),
            0x07 => self.encode(dt().day),
            0x08 => self.encode(dt().month),
            0x09 => self.encode(dt().year.rem_euclid(100)),
            REG_CENTURY => self.encode(dt().year.div_euclid(100)),
            REG_A => (self.reg_a() & 0x7F) | if self.uip_at(now) { REG_A_UIP } else { 0 },
            REG_C => {
                let v = self.flags | if self.irqf() { REG_C_IRQF } else { 0 };
                self.flags = 0;
                v
            }
            REG_D => REG_D_VRT,
            _ => self.cmos[usize::from(idx & 0x7F)],
        }
    }

    fn write_register(&mut self, now: i128, idx: u8, v: u8) {
        self.advance(now);
        match idx {
            0x00 | 0x02 | 0x04 | 0x07 | 0x08 | 0x09 | REG_CENTURY => {
                let mut dt = DateTime::from_unix(self.secs_at(now));
                match idx {
                    0x00 => dt.second = self.decode(v),
                    0x02 => dt.minute = self.decode(v),
                    0x04 => dt.hour = self.decode_hour(v),
                    0x07 => dt.day = self.decode(v).clamp(1, 31),
                    0x08 => dt.month = self.decode(v).clamp(1, 12),
                    0x09 => dt.year = dt.year.div_euclid(100) * 100 + self.decode(v).rem_euclid(100),
                    _ => dt.year = self.decode(v).rem_euclid(100) * 100 + dt.year.rem_euclid(100),
                }
                self.anchor(now, dt.to_unix());
            }
            0x06 => {
                let dt = DateTime::from_unix(self.secs_at(now));
                self.weekday_adjust = (self.decode(v) - 1 - dt.weekday).rem_euclid(7);
            }
            REG_A => {
                let secs = self.secs_at(now);
                let was_reset = !self.divider_running();
                self.cmos[usize::from(REG_A)] = v & 0x7F;
                if was_reset && self.divider_running() {
                    // The first update cycle comes 500 ms after the divider reset ends.
                    self.div_origin = now - NS_PER_SEC / 2;
                }
                self.anchor(now, secs);
            }
            REG_B => {
                let secs = self.secs_at(now);
                // Setting SET inhibits updates and clears UIE.
                let v = if v & REG_B_SET != 0 { v & !REG_B_UIE } else { v };
                self.cmos[usize::from(REG_B)] = v;
                self.anchor(now, secs);
            }
            REG_C | REG_D => {}
            _ => self.cmos[usize::from(idx & 0x7F)] = v,
        }
    }
}

impl Device for Rtc {
    /// `offset` is the absolute port number (0x70 reads 0xFF; 0x71 reads the selected
    /// register). The first byte gets the register; extra bytes read 0xFF.
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        data.fill(0xFF);
        if offset == u64::from(RTC_DATA_PORT) {
            data[0] = self.read_register(i128::from(now), self.index & 0x7F);
        }
    }

    /// `offset` is the absolute port number (0x70 index, 0x71 data). Only the first byte is
    /// written.
    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        if offset == u64::from(RTC_INDEX_PORT) {
            self.index = v;
        } else if offset == u64::from(RTC_DATA_PORT) {
            self.write_register(i128::from(now), self.index & 0x7F, v);
        }
    }

    /// The next virtual time at which PF, AF or UF would be set with its interrupt enabled
    /// (PIE, AIE, UIE); `None` while IRQF is already set (the line cannot rise again until
    /// register C is read) or when nothing is enabled.
    fn next_deadline(&self) -> Option<Nanos> {
        if self.irqf() || !self.divider_running() {
            return None;
        }
        let b = self.reg_b();
        let a = self.checked;
        let mut best: Option<i128> = None;
        let mut consider = |t: i128| best = Some(best.map_or(t, |x| x.min(t)));
        if b & REG_B_PIE != 0 {
            if let Some(p) = self.periodic_ticks() {
                let j = (self.t32_at(a).div_euclid(p) + 1) * p;
                consider(self.ns_of_t32(j));
            }
        }
        if self.running() {
            let next_update = self.updates_at(a) + 1;
            if b & REG_B_UIE != 0 {
                consider(self.div_origin + next_update * NS_PER_SEC);
            }
            if b & REG_B_AIE != 0 {
                let tod = self.secs_at(a).rem_euclid(SECS_PER_DAY);
                if let Some(d) = self.next_alarm_delta(tod) {
                    consider(self.div_origin + (next_update - 1 + i128::from(d)) * NS_PER_SEC);
                }
            }
        }
        best.map(|t| t.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// Set the register C flags for the events up to `now` (IRQ 8 follows IRQF).
    fn tick(&mut self, now: Nanos) {
        self.advance(i128::from(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;
    /// 2024-02-29T23:59:58Z, a Thursday.
    const START: i64 = 1_709_251_198;

    fn reg(r: &mut Rtc, now: Nanos, idx: u8) -> u8 {
        r.write(now, 0x70, &[idx]);
        let mut b = [0u8];
        r.read(now, 0x71, &mut b);
        b[0]
    }

    fn set(r: &mut Rtc, now: Nanos, idx: u8, v: u8) {
        r.write(now, 0x70, &[idx]);
        r.write(now, 0x71, &[v]);
    }

    fn time(r: &mut Rtc, now: Nanos) -> [u8; 8] {
        [0x32, 0x09, 0x08, 0x07, 0x06, 0x04, 0x02, 0x00].map(|i| reg(r, now, i))
    }

    #[test]
    fn civil_conversions() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        for z in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn bcd_time_advances_with_virtual_time() {
        let mut r = Rtc::new(START);
        // century, year, month, day, weekday (Thursday = 5), hour, minute, second
        assert_eq!(time(&mut r, 0), [0x20, 0x24, 0x02, 0x29, 0x05, 0x23, 0x59, 0x58]);
        assert_eq!(time(&mut r, SEC - 1), [0x20, 0x24, 0x02, 0x29, 0x05, 0x23, 0x59, 0x58]);
        assert_eq!(time(&mut r, SEC), [0x20, 0x24, 0x02, 0x29, 0x05, 0x23, 0x59, 0x59]);
        assert_eq!(time(&mut r, 2 * SEC), [0x20, 0x24, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00]);
        assert_eq!(reg(&mut r, 0, REG_D), 0x80);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut r = Rtc::new(START);
        set(&mut r, 0, REG_B, REG_B_DM | REG_B_24H);
        assert_eq!(time(&mut r, 0), [20, 24, 2, 29, 5, 23, 59, 58]);
        set(&mut r, 0, REG_B, REG_B_DM); // binary, 12-hour
        assert_eq!(reg(&mut r, 0, 0x04), 0x80 | 11);
        set(&mut r, 0, REG_B, 0); // BCD, 12-hour
        assert_eq!(reg(&mut r, 0, 0x04), 0x91);
        assert_eq!(reg(&mut r, 2 * SEC, 0x04), 0x12, "midnight is 12 AM");
        // Noon is 12 PM.
        set(&mut r, 2 * SEC, 0x04, 0x92);
        assert_eq!(reg(&mut r, 2 * SEC, 0x04), 0x92);
        set(&mut r, 2 * SEC, REG_B, REG_B_24H);
        assert_eq!(reg(&mut r, 2 * SEC, 0x04), 0x12);
    }

    #[test]
    fn setting_the_time_with_set() {
        let mut r = Rtc::new(START);
        set(&mut r, 0, REG_B, REG_B_SET | REG_B_24H);
        set(&mut r, 0, 0x32, 0x19);
        set(&mut r, 0, 0x09, 0x99);
        set(&mut r, 0, 0x08, 0x12);
        set(&mut r, 0, 0x07, 0x31);
        set(&mut r, 0, 0x04, 0x23);
        set(&mut r, 0, 0x02, 0x59);
        set(&mut r, 0, 0x00, 0x59);
        // Frozen while SET.
        assert_eq!(time(&mut r, 5 * SEC)[1..4], [0x99, 0x12, 0x31]);
        assert_eq!(reg(&mut r, 5 * SEC, 0x00), 0x59);
        assert_eq!(reg(&mut r, 5 * SEC, REG_A) & REG_A_UIP, 0, "no UIP while SET");
        set(&mut r, 5 * SEC + SEC / 2, REG_B, REG_B_24H);
        assert_eq!(reg(&mut r, 6 * SEC - 1, 0x00), 0x59);
        // The next update (same divider phase) rolls over into 2000.
        assert_eq!(time(&mut r, 6 * SEC), [0x20, 0x00, 0x01, 0x01, 0x07, 0x00, 0x00, 0x00]);
    }

    #[test]
    fn uip_timing() {
        let mut r = Rtc::new(START);
        let before = |k: u64, ns: u64| k * SEC - ns;
        assert_eq!(reg(&mut r, before(1, 244_001), REG_A), 0x26);
        assert_eq!(reg(&mut r, before(1, 244_000), REG_A), 0xA6);
        assert_eq!(reg(&mut r, before(1, 1), REG_A), 0xA6);
        assert_eq!(reg(&mut r, SEC, REG_A), 0x26);
        assert_eq!(reg(&mut r, before(7, 100_000), REG_A), 0xA6);
        // Divider reset: no updates, no UIP; the first update comes 500 ms after release.
        set(&mut r, 10 * SEC, REG_A, 0x66);
        let t = reg(&mut r, 10 * SEC, 0x00);
        assert_eq!(reg(&mut r, 20 * SEC, 0x00), t);
        assert_eq!(reg(&mut r, 20 * SEC - 100_000, REG_A), 0x66);
        set(&mut r, 20 * SEC + 123, REG_A, 0x26);
        assert_eq!(reg(&mut r, 20 * SEC + 123 + SEC / 2 - 1000, REG_A), 0xA6);
        assert_eq!(reg(&mut r, 20 * SEC + 123 + SEC / 2 - 1, 0x00), t);
        assert_ne!(reg(&mut r, 20 * SEC + 123 + SEC / 2, 0x00), t);
    }

    #[test]
    fn register_c_read_to_clear_and_update_ended_interrupt() {
        let mut r = Rtc::new(START);
        set(&mut r, 0, REG_A, 0x20); // periodic interrupt off
        set(&mut r, 0, 0x01, 0x30); // alarm 00:00:30, not reached in this test
                                    // UF is set by updates even with UIE clear; IRQF stays clear.
        assert_eq!(reg(&mut r, SEC, REG_C), REG_C_UF);
        assert_eq!(reg(&mut r, SEC, REG_C), 0, "read clears");
        assert!(!r.irq_level());
        assert_eq!(r.next_deadline(), None);
        set(&mut r, SEC, REG_B, REG_B_24H | REG_B_UIE);
        assert_eq!(r.next_deadline(), Some(2 * SEC));
        r.tick(2 * SEC);
        assert!(r.irq_level());
        assert_eq!(r.next_deadline(), None);
        assert_eq!(reg(&mut r, 2 * SEC + 5, REG_C), REG_C_IRQF | REG_C_UF);
        assert!(!r.irq_level());
        assert_eq!(r.next_deadline(), Some(3 * SEC));
        // Enabling an interrupt whose flag is already set raises IRQF at once.
        set(&mut r, 4 * SEC, REG_B, REG_B_24H);
        r.tick(5 * SEC);
        assert!(!r.irq_level());
        set(&mut r, 5 * SEC, REG_B, REG_B_24H | REG_B_UIE);
        assert!(r.irq_level());
        // SET clears UIE.
        set(&mut r, 5 * SEC, REG_B, REG_B_24H | REG_B_UIE | REG_B_SET);
        assert_eq!(reg(&mut r, 5 * SEC, REG_B), REG_B_24H | REG_B_SET);
    }

    #[test]
    fn periodic_interrupt_rate() {
        let mut r = Rtc::new(START);
        reg(&mut r, 0, REG_C);
        // Rate 6 (register A = 0x26): 1024 Hz, period 976.5625 µs.
        set(&mut r, 0, REG_B, REG_B_24H | REG_B_PIE);
        assert_eq!(r.next_deadline(), Some(976_563));
        r.tick(976_562);
        assert!(!r.irq_level());
        r.tick(976_563);
        assert!(r.irq_level());
        assert_eq!(reg(&mut r, 976_563, REG_C), REG_C_IRQF | REG_C_PF);
        assert_eq!(r.next_deadline(), Some(1_953_125));
        // Rate 15: 2 Hz.
        set(&mut r, 1_000_000, REG_A, 0x2F);
        assert_eq!(r.next_deadline(), Some(SEC / 2));
        // Rates 1 and 2 act as 8 and 9: 256 Hz and 128 Hz.
        set(&mut r, 1_000_000, REG_A, 0x21);
        assert_eq!(r.next_deadline(), Some(3_906_250));
        set(&mut r, 1_000_000, REG_A, 0x22);
        assert_eq!(r.next_deadline(), Some(7_812_500));
        // Rate 3: 8192 Hz, 122.0703125 µs.
        set(&mut r, 1_000_000, REG_A, 0x23);
        assert_eq!(r.next_deadline(), Some(1_098_633));
        // Rate 0: off.
        set(&mut r, 1_000_000, REG_A, 0x20);
        assert_eq!(r.next_deadline(), None);
        // PF is set without PIE too, counted from the divider chain.
        set(&mut r, 1_000_000, REG_A, 0x26);
        set(&mut r, 1_000_000, REG_B, REG_B_24H);
        assert_eq!(reg(&mut r, 1_100_000, REG_C) & REG_C_PF, 0);
        assert_eq!(reg(&mut r, 2_000_000, REG_C), REG_C_PF);
    }

    #[test]
    fn alarm() {
        let mut r = Rtc::new(START); // 23:59:58
        set(&mut r, 0, REG_A, 0x20); // periodic interrupt off
        set(&mut r, 0, REG_B, REG_B_24H | REG_B_AIE);
        // Alarm at 00:00:05 (BCD).
        set(&mut r, 0, 0x01, 0x05);
        set(&mut r, 0, 0x03, 0x00);
        set(&mut r, 0, 0x05, 0x00);
        assert_eq!(r.next_deadline(), Some(7 * SEC));
        r.tick(7 * SEC - 1);
        assert!(!r.irq_level());
        r.tick(7 * SEC);
        assert!(r.irq_level());
        assert_eq!(reg(&mut r, 7 * SEC, REG_C), REG_C_IRQF | REG_C_AF | REG_C_UF);
        // Next match is a day later.
        assert_eq!(r.next_deadline(), Some((7 + 86_400) * SEC));
        // Don't-care hours and minutes: every minute at second 5.
        set(&mut r, 7 * SEC, 0x03, 0xC0);
        set(&mut r, 7 * SEC, 0x05, 0xFF);
        assert_eq!(r.next_deadline(), Some(67 * SEC));
        // All don't-care: every second.
        set(&mut r, 7 * SEC, 0x01, 0xC0);
        assert_eq!(r.next_deadline(), Some(8 * SEC));
        // AF without AIE, over a long gap.
        set(&mut r, 7 * SEC, REG_B, REG_B_24H);
        set(&mut r, 7 * SEC, 0x01, 0x30);
        set(&mut r, 7 * SEC, 0x03, 0x10);
        set(&mut r, 7 * SEC, 0x05, 0x03);
        reg(&mut r, 7 * SEC, REG_C);
        assert_eq!(reg(&mut r, 3 * 3600 * SEC, REG_C), REG_C_UF);
        assert_eq!(reg(&mut r, 4 * 3600 * SEC, REG_C), REG_C_UF | REG_C_AF);
        // Invalid alarm value never matches.
        set(&mut r, 0, REG_B, REG_B_24H | REG_B_AIE);
        set(&mut r, 0, 0x05, 0x25);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn cmos_ram_and_memory_size() {
        let mut r = Rtc::new(0);
        set(&mut r, 0, 0x40, 0xAB);
        assert_eq!(reg(&mut r, 0, 0x40), 0xAB);
        set(&mut r, 0, 0x7F, 0x12);
        assert_eq!(reg(&mut r, 0, 0xFF), 0x12, "bit 7 of the index is NMI disable");
        assert!(r.nmi_disabled());
        r.set_memory_size(6 << 30);
        let w = |r: &Rtc, i: u8| u32::from(r.cmos(i)) | (u32::from(r.cmos(i + 1)) << 8);
        assert_eq!(w(&r, 0x15), 640);
        assert_eq!(w(&r, 0x17), 0xFFFF);
        assert_eq!(w(&r, 0x30), 0xFFFF);
        assert_eq!(w(&r, 0x34), ((4u64 << 30) - (16 << 20)) as u32 / 65536);
        assert_eq!(w(&r, 0x5B) | (u32::from(r.cmos(0x5D)) << 16), (2u32 << 30) / 65536);
        r.set_memory_size(32 << 20);
        assert_eq!(w(&r, 0x17), 31 * 1024);
        assert_eq!(w(&r, 0x34), 256);
        assert_eq!(r.cmos(0x5B), 0);
        let sum: u32 = (0x10..=0x2D).map(|i| u32::from(r.cmos(i))).sum();
        assert_eq!((w(&r, 0x2E) as u16).swap_bytes(), sum as u16);
        // Clock registers are not RAM.
        r.set_cmos(0x00, 0x42);
        r.set_cmos(0x0C, 0xFF);
        assert_eq!(reg(&mut r, 0, REG_C), 0);
    }

    #[test]
    fn weekday_write_sticks() {
        let mut r = Rtc::new(START);
        set(&mut r, 0, 0x06, 0x02);
        assert_eq!(reg(&mut r, 0, 0x06), 0x02);
        assert_eq!(reg(&mut r, 2 * SEC, 0x06), 0x03);
    }

    #[test]
    fn odd_accesses_never_panic() {
        let mut r = Rtc::new(i64::MAX);
        let mut buf = [0u8; 4];
        r.read(0, 0x70, &mut buf);
        assert_eq!(buf, [0xFF; 4]);
        r.read(0, 0x71, &mut buf);
        assert_eq!(&buf[1..], &[0xFF; 3]);
        r.read(0, 0x71, &mut []);
        r.write(0, 0x71, &[]);
        r.write(0, 0x1234, &[1, 2]);
        let mut now = 0;
        for idx in 0..=255u8 {
            for v in [0u8, 0x12, 0x7F, 0x80, 0xC5, 0xFF] {
                now += 7_777_777;
                r.write(now, 0x70, &[idx]);
                r.write(now, 0x71, &[v]);
                r.read(now, 0x71, &mut buf);
                r.tick(now);
                let _ = r.next_deadline();
            }
        }
        let mut r = Rtc::new(i64::MIN);
        r.tick(u64::MAX);
        r.read(u64::MAX, 0x71, &mut buf);
        let _ = r.next_deadline();
    }
}
