//! ACPI fixed-hardware power-management registers: the PM1a event block (PM1_STS, PM1_EN), the
//! PM1a control block (PM1_CNT) and the power-management timer (PM_TMR).
//!
//! References: ACPI Specification 6.5 §4.8 (fixed hardware programming model): §4.8.1.1
//! (PM1 event grouping), §4.8.1.2 (PM1 control grouping), §4.8.2.1 (power management timer),
//! §4.8.3.1 Table 4.16/4.17 (PM1 status / enable bits), §4.8.3.2.1 Table 4.18 (PM1 control
//! bits), §7.4.2 (`\_Sx` sleep-type packages), §16.1.6 (soft-off, S5).
//!
//! # Register layout
//!
//! The machine chooses the I/O base (documented default [`DEFAULT_BASE`] = 0x600) and passes
//! `offset` **relative to that base** to [`Device::read`] / [`Device::write`]. The FADT built
//! by the machine must describe the same layout (PM1a_EVT_BLK = base, PM1_EVT_LEN = 4;
//! PM1a_CNT_BLK = base + 4, PM1_CNT_LEN = 2; PM_TMR_BLK = base + 8, PM_TMR_LEN = 4; no PM1b,
//! PM2 or GPE blocks):
//!
//! | offset | port (default) | size | register | access |
//! |--------|----------------|------|----------|--------|
//! | 0      | 0x600          | 16   | PM1_STS  | read; write 1 to clear |
//! | 2      | 0x602          | 16   | PM1_EN   | read/write |
//! | 4      | 0x604          | 16   | PM1_CNT  | read/write (SLP_EN, GBL_RLS write-only) |
//! | 6–7    | 0x606–0x607    | —    | unused   | read 0xFF, writes ignored |
//! | 8      | 0x608          | 32   | PM_TMR   | read-only, 24-bit counter, bits 31:24 read 0 |
//!
//! Any access size works at any offset: the access is split into bytes, each byte goes to the
//! register that holds it, and all bytes of one write are applied together (so a 16-bit write of
//! PM1_CNT sees SLP_TYP and SLP_EN at once, as does a write of its high byte alone). Bytes outside
//! the table above read 0xFF and ignore writes; no access panics.
//!
//! # PM timer
//!
//! The timer counts at [`PM_TIMER_HZ`] (3.579545 MHz) from 0 at virtual time 0:
//! `ticks = floor(now × 3_579_545 / 10^9)`, exact integer arithmetic, reported modulo 2^24
//! (TMR_VAL_EXT is clear in the FADT). Whenever bit 23 of the count toggles (every 2^23 ticks,
//! ≈ 2.34 s) TMR_STS is set in PM1_STS. Status is brought up to date at every access and
//! [`Device::tick`]; [`Device::next_deadline`] asks for a tick only while TMR_EN is set and
//! TMR_STS is clear (the only case in which the next toggle changes the SCI).
//!
//! # Sleep states
//!
//! The machine is always in ACPI mode (the FADT's SMI_CMD is 0), so SCI_EN reads 1 and cannot be
//! cleared. Writing PM1_CNT with SLP_EN = 1 and SLP_TYP = [`SLP_TYP_S5`] (5, the value in the
//! DSDT's `\_S5` package) requests soft-off: [`AcpiPm::take_poweroff_request`] then returns true
//! once. Other sleep types are ignored (the write only stores SLP_TYP): S1–S4 are not supported
//! and the DSDT declares only `\_S5`, so an OS never asks for them. WAK_STS is therefore never set.
//!
//! # SCI
//!
//! [`AcpiPm::sci_level`] is the level of the SCI line: high while any of TMR_STS, GBL_STS,
//! PWRBTN_STS, SLPBTN_STS, RTC_STS is set together with its enable bit. The machine wires it to
//! the IRQ named in the FADT's SCI_INT (9 by default), level-triggered, active high at the PIC
//! input, and should update that line after every access and [`Device::tick`]. Of these status
//! bits only TMR_STS (timer) and PWRBTN_STS ([`AcpiPm::press_power_button`]) are ever set by this
//! model; the other enable bits are stored so that an OS sees them stick (ACPICA checks that
//! GBL_EN sticks to decide whether the global lock exists).

use crate::{Device, Nanos};

/// Documented default I/O base of the block (PM1a_EVT_BLK). QEMU's PC machines use the same
/// layout (PM1 event at +0, PM1 control at +4, PM timer at +8).
pub const DEFAULT_BASE: u16 = 0x600;
/// Bytes of I/O space the device decodes from its base (PM1 event, PM1 control, 2 unused, PM timer).
pub const REGION_LEN: u64 = 12;

/// Offset of the PM1a event block (PM1_STS at +0, PM1_EN at +2). ACPI 6.5 §4.8.1.1.
pub const PM1_EVT_OFFSET: u64 = 0;
/// Length in bytes of the PM1a event block (the FADT's PM1_EVT_LEN).
pub const PM1_EVT_LEN: u8 = 4;
/// Offset of PM1_STS (16 bits).
pub const PM1_STS_OFFSET: u64 = 0;
/// Offset of PM1_EN (16 bits).
pub const PM1_EN_OFFSET: u64 = 2;
/// Offset of the PM1a control block (PM1_CNT, 16 bits). ACPI 6.5 §4.8.1.2.
pub const PM1_CNT_OFFSET: u64 = 4;
/// Length in bytes of the PM1a control block (the FADT's PM1_CNT_LEN).
pub const PM1_CNT_LEN: u8 = 2;
/// Offset of the PM timer (32-bit register, 24-bit count). ACPI 6.5 §4.8.2.1.
pub const PM_TMR_OFFSET: u64 = 8;
/// Length in bytes of the PM timer block (the FADT's PM_TMR_LEN).
pub const PM_TMR_LEN: u8 = 4;

/// PM timer frequency in Hz (ACPI 6.5 §4.8.2.1: 3.579545 MHz).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// Mask of the 24-bit timer value (TMR_VAL_EXT = 0).
pub const PM_TIMER_MASK: u32 = 0x00FF_FFFF;
/// log2 of the timer period between TMR_STS events: set when bit 23 toggles.
const TMR_STS_SHIFT: u32 = 23;

/// PM1_STS bit 0: timer carry (bit 23 of the PM timer toggled). Table 4.16.
pub const TMR_STS: u16 = 1 << 0;
/// PM1_STS bit 4: bus-master status (never set here). Table 4.16.
pub const BM_STS: u16 = 1 << 4;
/// PM1_STS bit 5: global-lock release by firmware (never set here). Table 4.16.
pub const GBL_STS: u16 = 1 << 5;
/// PM1_STS bit 8: fixed power button pressed. Table 4.16.
pub const PWRBTN_STS: u16 = 1 << 8;
/// PM1_STS bit 9: fixed sleep button pressed (never set: the FADT declares none). Table 4.16.
pub const SLPBTN_STS: u16 = 1 << 9;
/// PM1_STS bit 10: RTC alarm (never set: the FADT sets FIX_RTC). Table 4.16.
pub const RTC_STS: u16 = 1 << 10;
/// PM1_STS bit 14: PCI Express wake (never set). Table 4.16.
pub const PCIEXP_WAKE_STS: u16 = 1 << 14;
/// PM1_STS bit 15: wake status (never set: no sleep state returns). Table 4.16.
pub const WAK_STS: u16 = 1 << 15;

/// PM1_EN bit 0: timer carry interrupt enable. Table 4.17.
pub const TMR_EN: u16 = 1 << 0;
/// PM1_EN bit 5: global-lock release interrupt enable. Table 4.17.
pub const GBL_EN: u16 = 1 << 5;
/// PM1_EN bit 8: power button enable. Table 4.17.
pub const PWRBTN_EN: u16 = 1 << 8;
/// PM1_EN bit 9: sleep button enable. Table 4.17.
pub const SLPBTN_EN: u16 = 1 << 9;
/// PM1_EN bit 10: RTC alarm enable. Table 4.17.
pub const RTC_EN: u16 = 1 << 10;
/// PM1_EN bit 14: PCI Express wake disable. Table 4.17.
pub const PCIEXP_WAKE_DIS: u16 = 1 << 14;
/// Bits of PM1_EN that are stored; the rest are reserved and read 0.
const PM1_EN_MASK: u16 = TMR_EN | GBL_EN | PWRBTN_EN | SLPBTN_EN | RTC_EN | PCIEXP_WAKE_DIS;
/// Status bits that raise the SCI when enabled (each enable bit sits at its status bit's position).
const SCI_SOURCES: u16 = TMR_STS | GBL_STS | PWRBTN_STS | SLPBTN_STS | RTC_STS;

/// PM1_CNT bit 0: SCI_EN, 1 = ACPI mode (always 1 here). Table 4.18.
pub const SCI_EN: u16 = 1 << 0;
/// PM1_CNT bit 1: BM_RLD (stored, no effect). Table 4.18.
pub const BM_RLD: u16 = 1 << 1;
/// PM1_CNT bit 2: GBL_RLS, write-only (OS releases the global lock to firmware; no effect). Table 4.18.
pub const GBL_RLS: u16 = 1 << 2;
/// PM1_CNT bits 12:10: SLP_TYP. Table 4.18.
pub const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
/// Bit position of SLP_TYP in PM1_CNT.
pub const SLP_TYP_SHIFT: u32 = 10;
/// PM1_CNT bit 13: SLP_EN, write-only (reads 0): enter the sleep state in SLP_TYP. Table 4.18.
pub const SLP_EN: u16 = 1 << 13;
/// Bits of PM1_CNT that are stored (SCI_EN is forced to 1 on read; GBL_RLS and SLP_EN read 0).
const PM1_CNT_STORED: u16 = BM_RLD | SLP_TYP_MASK;

/// SLP_TYP value of soft-off (S5). It must equal the first two elements of the DSDT's
/// `Name(_S5, Package(){5, 5, 0, 0})` (SLP_TYPa, SLP_TYPb; ACPI 6.5 §7.4.2). SLP_TYP encodings
/// are chipset-defined (the OS only copies the value from `\_S5`); 5 is this machine's choice.
pub const SLP_TYP_S5: u16 = 5;

/// PM timer ticks (unwrapped) at virtual time `now`.
fn ticks_at(now: Nanos) -> u64 {
    (u128::from(now) * u128::from(PM_TIMER_HZ) / 1_000_000_000) as u64
}

/// First virtual time at which [`ticks_at`] reaches `ticks`.
fn ns_of_ticks(ticks: u64) -> Nanos {
    let ns = (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(PM_TIMER_HZ));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The ACPI PM1a event/control blocks and PM timer of the PC (ACPI 6.5 §4.8). See the module
/// documentation for the register layout; `offset` is relative to the block's base.
#[derive(Debug, Clone, Default)]
pub struct AcpiPm {
    /// PM1_STS.
    sts: u16,
    /// PM1_EN (only [`PM1_EN_MASK`] bits).
    en: u16,
    /// Stored bits of PM1_CNT ([`PM1_CNT_STORED`]).
    cnt: u16,
    /// Number of bit-23 toggles of the PM timer accounted for in TMR_STS (`ticks >> 23` at the
    /// last update).
    tmr_carries: u64,
    /// The guest wrote SLP_EN with SLP_TYP = S5 and the machine has not taken the request yet.
    poweroff: bool,
}

impl AcpiPm {
    /// The registers in their power-on state: all status and enable bits clear, SLP_TYP 0, the
    /// timer at 0 at virtual time 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// True once after the guest requested soft-off (SLP_EN with SLP_TYP = [`SLP_TYP_S5`]);
    /// the machine polls this after port writes and powers off.
    pub fn take_poweroff_request(&mut self) -> bool {
        std::mem::take(&mut self.poweroff)
    }

    /// Level of the SCI: any of TMR_STS, GBL_STS, PWRBTN_STS, SLPBTN_STS, RTC_STS set together
    /// with its enable bit (ACPI 6.5 §4.8.3.1). Reflects the state at the last access or tick.
    pub fn sci_level(&self) -> bool {
        self.sts & self.en & SCI_SOURCES != 0
    }

    /// Press the fixed-feature power button: sets PWRBTN_STS (raising the SCI if PWRBTN_EN is
    /// set), so an OS can shut down in an orderly way (ACPI 6.5 §4.8.2.2.1.1). The FADT leaves
    /// PWR_BUTTON clear, declaring this fixed button present.
    pub fn press_power_button(&mut self) {
        self.sts |= PWRBTN_STS;
    }

    /// The 24-bit PM timer value at virtual time `now` (what a read of PM_TMR returns).
    pub fn timer_value(now: Nanos) -> u32 {
        ticks_at(now) as u32 & PM_TIMER_MASK
    }

    /// Bring TMR_STS up to date with virtual time `now`.
    fn update(&mut self, now: Nanos) {
        let carries = ticks_at(now) >> TMR_STS_SHIFT;
        if carries > self.tmr_carries {
            self.tmr_carries = carries;
            self.sts |= TMR_STS;
        }
    }

    /// PM1_CNT as read: SCI_EN always 1, SLP_EN and GBL_RLS 0.
    fn cnt_value(&self) -> u16 {
        self.cnt | SCI_EN
    }

    /// Value of the byte at `offset` (registers already up to date).
    fn byte_at(&self, now: Nanos, offset: u64) -> u8 {
        let le = |v: u16, hi: bool| if hi { (v >> 8) as u8 } else { v as u8 };
        match offset {
            0 | 1 => le(self.sts, offset == 1),
            2 | 3 => le(self.en, offset == 3),
            4 | 5 => le(self.cnt_value(), offset == 5),
            8..=11 => (Self::timer_value(now) >> (8 * (offset - 8))) as u8,
            _ => 0xFF,
        }
    }

    /// Apply a PM1_CNT write of `value` in the bytes selected by `mask`.
    fn write_cnt(&mut self, value: u16, mask: u16) {
        let merged = (self.cnt_value() & !mask) | (value & mask);
        self.cnt = merged & PM1_CNT_STORED;
        if mask & SLP_EN != 0 && value & SLP_EN != 0 {
            let slp_typ = (merged & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
            if slp_typ == SLP_TYP_S5 {
                self.poweroff = true;
            }
            // Other sleep types (S0–S4 encodings) are not supported and are ignored.
        }
    }
}

impl Device for AcpiPm {
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        self.update(now);
        for (i, b) in data.iter_mut().enumerate() {
            *b = match offset.checked_add(i as u64) {
                Some(off) => self.byte_at(now, off),
                None => 0xFF,
            };
        }
    }

    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        self.update(now);
        // Gather the bytes per 16-bit register: (value, byte mask) for STS, EN, CNT.
        let mut regs = [(0u16, 0u16); 3];
        for (i, &b) in data.iter().enumerate() {
            let Some(off) = offset.checked_add(i as u64) else { break };
            if off >= 6 {
                continue; // unused bytes and the read-only PM timer
            }
            let (reg, shift) = ((off / 2) as usize, 8 * (off % 2));
            regs[reg].0 |= u16::from(b) << shift;
            regs[reg].1 |= 0xFF << shift;
        }
        let [(sts_v, sts_m), (en_v, en_m), (cnt_v, cnt_m)] = regs;
        // PM1_STS: write 1 to clear.
        self.sts &= !(sts_v & sts_m);
        // PM1_EN: stored (reserved bits read 0).
        self.en = ((self.en & !en_m) | (en_v & en_m)) & PM1_EN_MASK;
        if cnt_m != 0 {
            self.write_cnt(cnt_v, cnt_m);
        }
    }

    fn next_deadline(&self) -> Option<Nanos> {
        if self.en & TMR_EN != 0 && self.sts & TMR_STS == 0 {
            let next = self.tmr_carries.checked_add(1)?.checked_mul(1 << TMR_STS_SHIFT)?;
            Some(ns_of_ticks(next))
        } else {
            None
        }
    }

    fn tick(&mut self, now: Nanos) {
        self.update(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Nanos = 1_000_000_000;

    fn rd(pm: &mut AcpiPm, now: Nanos, offset: u64, size: usize) -> u64 {
        let mut buf = [0u8; 8];
        pm.read(now, offset, &mut buf[..size]);
        u64::from_le_bytes(buf)
    }

    fn wr(pm: &mut AcpiPm, now: Nanos, offset: u64, size: usize, v: u64) {
        pm.write(now, offset, &v.to_le_bytes()[..size]);
    }

    #[test]
    fn timer_runs_at_3_579545_mhz() {
        let mut pm = AcpiPm::new();
        assert_eq!(rd(&mut pm, 0, PM_TMR_OFFSET, 4), 0);
        // Exactly 1 s: 3_579_545 ticks.
        assert_eq!(rd(&mut pm, SEC, PM_TMR_OFFSET, 4), 3_579_545);
        // One tick is 279.365... ns: floor.
        assert_eq!(rd(&mut pm, 279, PM_TMR_OFFSET, 4), 0);
        assert_eq!(rd(&mut pm, 280, PM_TMR_OFFSET, 4), 1);
        assert_eq!(rd(&mut pm, 1_000, PM_TMR_OFFSET, 4), 3);
        // 1 ms: 3579.545 ticks.
        assert_eq!(rd(&mut pm, 1_000_000, PM_TMR_OFFSET, 4), 3579);
        // Byte and word reads see the same counter.
        let now = 4 * SEC + 123_456;
        let full = rd(&mut pm, now, PM_TMR_OFFSET, 4);
        let lo = rd(&mut pm, now, PM_TMR_OFFSET, 2);
        let b2 = rd(&mut pm, now, PM_TMR_OFFSET + 2, 1);
        let b3 = rd(&mut pm, now, PM_TMR_OFFSET + 3, 1);
        assert_eq!(lo | b2 << 16, full);
        assert_eq!(b3, 0, "bits 31:24 read 0 with a 24-bit timer");
        // Writes to the timer are ignored.
        wr(&mut pm, now, PM_TMR_OFFSET, 4, 0);
        assert_eq!(rd(&mut pm, now, PM_TMR_OFFSET, 4), full);
    }

    #[test]
    fn timer_wraps_at_24_bits() {
        let mut pm = AcpiPm::new();
        // First virtual time with ticks == 2^24.
        let wrap = ns_of_ticks(1 << 24);
        assert_eq!(ticks_at(wrap), 1 << 24);
        assert_eq!(ticks_at(wrap - 1), (1 << 24) - 1);
        assert_eq!(rd(&mut pm, wrap - 1, PM_TMR_OFFSET, 4), 0xFF_FFFF);
        assert_eq!(rd(&mut pm, wrap, PM_TMR_OFFSET, 4), 0);
        // ≈ 4.687 s per wrap.
        assert_eq!(wrap, 4_686_968_875);
        // Far in the future: still 24 bits, still exact.
        let now = 1_000_000 * SEC;
        assert_eq!(rd(&mut pm, now, PM_TMR_OFFSET, 4), (3_579_545u64 * 1_000_000) & 0xFF_FFFF);
        // The largest virtual time does not overflow.
        assert!(rd(&mut pm, u64::MAX, PM_TMR_OFFSET, 4) <= 0xFF_FFFF);
    }

    #[test]
    fn timer_is_monotonic_between_wraps() {
        let mut pm = AcpiPm::new();
        let mut last = 0;
        let mut now = 0;
        while now < 4 * SEC {
            let v = rd(&mut pm, now, PM_TMR_OFFSET, 4);
            assert!(v >= last, "{now}: {v} < {last}");
            last = v;
            now += 7_919;
        }
    }

    #[test]
    fn tmr_sts_set_when_bit_23_toggles() {
        let mut pm = AcpiPm::new();
        let half = ns_of_ticks(1 << 23);
        assert_eq!(rd(&mut pm, half - 1, PM1_STS_OFFSET, 2) as u16 & TMR_STS, 0);
        assert_eq!(rd(&mut pm, half, PM1_STS_OFFSET, 2) as u16 & TMR_STS, TMR_STS);
        // Not enabled: no SCI, no deadline.
        assert!(!pm.sci_level());
        assert_eq!(pm.next_deadline(), None);
        // Clear it; the next toggle (1 → 0 at the wrap) sets it again.
        wr(&mut pm, half, PM1_STS_OFFSET, 2, u64::from(TMR_STS));
        assert_eq!(rd(&mut pm, half, PM1_STS_OFFSET, 2), 0);
        let wrap = ns_of_ticks(1 << 24);
        assert_eq!(rd(&mut pm, wrap - 1, PM1_STS_OFFSET, 2), 0);
        assert_eq!(rd(&mut pm, wrap, PM1_STS_OFFSET, 2) as u16, TMR_STS);
    }

    #[test]
    fn timer_sci_and_deadline() {
        let mut pm = AcpiPm::new();
        assert_eq!(pm.next_deadline(), None);
        wr(&mut pm, 10, PM1_EN_OFFSET, 2, u64::from(TMR_EN));
        let first = ns_of_ticks(1 << 23);
        assert_eq!(pm.next_deadline(), Some(first));
        pm.tick(first - 1);
        assert!(!pm.sci_level());
        pm.tick(first);
        assert!(pm.sci_level());
        // Status set: no deadline until the guest clears it.
        assert_eq!(pm.next_deadline(), None);
        wr(&mut pm, first + 100, PM1_STS_OFFSET, 2, u64::from(TMR_STS));
        assert!(!pm.sci_level());
        assert_eq!(pm.next_deadline(), Some(ns_of_ticks(2 << 23)));
        // Disabling the enable bit drops the SCI and the deadline.
        pm.tick(ns_of_ticks(2 << 23));
        assert!(pm.sci_level());
        wr(&mut pm, ns_of_ticks(2 << 23), PM1_EN_OFFSET, 2, 0);
        assert!(!pm.sci_level());
        assert_eq!(pm.next_deadline(), None);
    }

    #[test]
    fn sci_en_reads_one() {
        let mut pm = AcpiPm::new();
        assert_eq!(rd(&mut pm, 0, PM1_CNT_OFFSET, 2), u64::from(SCI_EN));
        // Clearing it has no effect: the machine is always in ACPI mode.
        wr(&mut pm, 0, PM1_CNT_OFFSET, 2, 0);
        assert_eq!(rd(&mut pm, 0, PM1_CNT_OFFSET, 2), u64::from(SCI_EN));
        assert_eq!(rd(&mut pm, 0, PM1_CNT_OFFSET, 1), u64::from(SCI_EN));
        // BM_RLD and SLP_TYP are stored; GBL_RLS and SLP_EN read 0.
        let v = BM_RLD | GBL_RLS | (3 << SLP_TYP_SHIFT) | 0x8000;
        wr(&mut pm, 0, PM1_CNT_OFFSET, 2, u64::from(v));
        assert_eq!(rd(&mut pm, 0, PM1_CNT_OFFSET, 2) as u16, SCI_EN | BM_RLD | (3 << SLP_TYP_SHIFT));
        assert!(!pm.take_poweroff_request());
    }

    #[test]
    fn s5_requests_poweroff() {
        let mut pm = AcpiPm::new();
        // ACPICA's sequence: write SLP_TYP, then SLP_TYP | SLP_EN (preserving SCI_EN).
        let typ = SCI_EN | (SLP_TYP_S5 << SLP_TYP_SHIFT);
        wr(&mut pm, 5, PM1_CNT_OFFSET, 2, u64::from(typ));
        assert!(!pm.take_poweroff_request());
        wr(&mut pm, 6, PM1_CNT_OFFSET, 2, u64::from(typ | SLP_EN));
        assert!(pm.take_poweroff_request());
        assert!(!pm.take_poweroff_request(), "taken once");
        // SLP_EN reads 0 afterwards; SLP_TYP stays.
        assert_eq!(rd(&mut pm, 7, PM1_CNT_OFFSET, 2) as u16, typ);
        // A byte write of the high half alone works too.
        let mut pm = AcpiPm::new();
        wr(&mut pm, 0, PM1_CNT_OFFSET + 1, 1, u64::from((SLP_TYP_S5 << SLP_TYP_SHIFT | SLP_EN) >> 8));
        assert!(pm.take_poweroff_request());
        // A 32-bit write covering PM1_CNT and the unused bytes.
        let mut pm = AcpiPm::new();
        wr(&mut pm, 0, PM1_CNT_OFFSET, 4, u64::from(typ | SLP_EN) | 0xFFFF_0000);
        assert!(pm.take_poweroff_request());
    }

    #[test]
    fn other_sleep_types_are_ignored() {
        for typ in (0..8u16).filter(|&t| t != SLP_TYP_S5) {
            let mut pm = AcpiPm::new();
            wr(&mut pm, 0, PM1_CNT_OFFSET, 2, u64::from(SCI_EN | typ << SLP_TYP_SHIFT | SLP_EN));
            assert!(!pm.take_poweroff_request(), "SLP_TYP {typ}");
            assert_eq!(rd(&mut pm, 0, PM1_CNT_OFFSET, 2) as u16, SCI_EN | typ << SLP_TYP_SHIFT);
        }
        // SLP_TYP = 5 without SLP_EN: no request; writing only the low byte never sets SLP_EN.
        let mut pm = AcpiPm::new();
        wr(&mut pm, 0, PM1_CNT_OFFSET, 2, u64::from(SLP_TYP_S5 << SLP_TYP_SHIFT));
        wr(&mut pm, 0, PM1_CNT_OFFSET, 1, 0xFF);
        assert!(!pm.take_poweroff_request());
    }

    #[test]
    fn status_is_write_one_to_clear() {
        let mut pm = AcpiPm::new();
        pm.press_power_button();
        pm.tick(ns_of_ticks(1 << 23));
        let now = ns_of_ticks(1 << 23);
        assert_eq!(rd(&mut pm, now, PM1_STS_OFFSET, 2) as u16, PWRBTN_STS | TMR_STS);
        // Writing 0 clears nothing; writing the other bit clears only that one.
        wr(&mut pm, now, PM1_STS_OFFSET, 2, 0);
        assert_eq!(rd(&mut pm, now, PM1_STS_OFFSET, 2) as u16, PWRBTN_STS | TMR_STS);
        wr(&mut pm, now, PM1_STS_OFFSET, 2, u64::from(TMR_STS));
        assert_eq!(rd(&mut pm, now, PM1_STS_OFFSET, 2) as u16, PWRBTN_STS);
        // Byte write to the high byte clears PWRBTN_STS (bit 8).
        wr(&mut pm, now, PM1_STS_OFFSET + 1, 1, 0x01);
        assert_eq!(rd(&mut pm, now, PM1_STS_OFFSET, 2), 0);
        // ACPICA's "clear all fixed status" write (0xFFFF incl. WAK_STS) is harmless; a 32-bit
        // write of the event block clears status and sets enables at once.
        pm.press_power_button();
        wr(&mut pm, now, PM1_EVT_OFFSET, 4, 0xFFFF_FFFF);
        assert_eq!(rd(&mut pm, now, PM1_STS_OFFSET, 2), 0);
        assert_eq!(rd(&mut pm, now, PM1_EN_OFFSET, 2) as u16, PM1_EN_MASK);
    }

    #[test]
    fn enable_bits_stick_and_gate_the_sci() {
        let mut pm = AcpiPm::new();
        for bit in [TMR_EN, GBL_EN, PWRBTN_EN, SLPBTN_EN, RTC_EN, PCIEXP_WAKE_DIS] {
            wr(&mut pm, 0, PM1_EN_OFFSET, 2, u64::from(bit));
            assert_eq!(rd(&mut pm, 0, PM1_EN_OFFSET, 2) as u16, bit);
        }
        // Reserved bits read 0.
        wr(&mut pm, 0, PM1_EN_OFFSET, 2, 0x0002);
        assert_eq!(rd(&mut pm, 0, PM1_EN_OFFSET, 2), 0);
        // Power button: SCI only while both status and enable are set.
        pm.press_power_button();
        assert!(!pm.sci_level());
        wr(&mut pm, 0, PM1_EN_OFFSET, 2, u64::from(PWRBTN_EN));
        assert!(pm.sci_level());
        wr(&mut pm, 0, PM1_STS_OFFSET, 2, u64::from(PWRBTN_STS));
        assert!(!pm.sci_level());
        assert_eq!(rd(&mut pm, 0, PM1_EN_OFFSET, 2) as u16, PWRBTN_EN);
    }

    #[test]
    fn bad_sizes_and_offsets_never_panic() {
        let mut pm = AcpiPm::new();
        // Unused bytes and offsets past the block read all ones and ignore writes.
        assert_eq!(rd(&mut pm, 0, 6, 2), 0xFFFF);
        assert_eq!(rd(&mut pm, 0, REGION_LEN, 4), 0xFFFF_FFFF);
        assert_eq!(rd(&mut pm, 0, u64::MAX, 8), u64::MAX);
        // A read straddling the end of PM1_CNT.
        assert_eq!(rd(&mut pm, 0, 5, 2), 0xFF00);
        for now in [0, 1, SEC, u64::MAX] {
            for off in (0..20).chain([u64::MAX - 3, u64::MAX]) {
                for size in 0..=8 {
                    let mut buf = vec![0u8; size];
                    pm.read(now, off, &mut buf);
                    pm.write(now, off, &buf);
                    pm.write(now, off, &vec![0xFF; size]);
                }
            }
            let _ = pm.next_deadline();
            pm.tick(now);
        }
        // All-ones writes everywhere may have requested S5 (SLP_TYP 7 ≠ 5 here, so not).
        let _ = pm.take_poweroff_request();
        // A deadline near the end of time does not overflow.
        let mut pm = AcpiPm::new();
        wr(&mut pm, u64::MAX, PM1_EN_OFFSET, 2, u64::from(TMR_EN));
        let _ = pm.next_deadline();
    }
}
