//! The PC/AT pair of Intel 8259A programmable interrupt controllers, plus the PIIX-style ELCR.
//!
//! The master chip sits at ports 0x20/0x21 and delivers INTR to the CPU; the slave sits at ports
//! 0xA0/0xA1 and its INTR output drives the master's IR2 input (cascade). The edge/level control
//! registers (ELCR, Intel 82371AB PIIX4 datasheet, "ELCR1/ELCR2") are at ports 0x4D0/0x4D1.
//!
//! Register and bit names follow the Intel 8259A datasheet: IRR (interrupt request register),
//! ISR (in-service register), IMR (interrupt mask register), ICW1–ICW4 (initialization command
//! words), OCW1–OCW3 (operation command words).
//!
//! # Port addressing
//!
//! The machine registers one [`Pic`] at several port ranges (0x20–0x21, 0xA0–0xA1,
//! 0x4D0–0x4D1) and passes the **absolute port number** as `offset` to [`Device::read`] and
//! [`Device::write`]. All registers are 8 bits wide: a wider access acts on its first byte only
//! (the port in `offset`); the extra bytes of a read return 0xFF and the extra bytes of a write
//! are ignored. Ports other than the six above read 0xFF and ignore writes.
//!
//! # Deviations from the silicon
//!
//! * Edge-triggered inputs latch the rising edge in IRR until the INTA cycle, so a device may
//!   pulse its line (raise then lower it) between two CPU instructions, as QEMU-style machines
//!   do; on a real 8259A the input must stay high until INTA. A request that is withdrawn before
//!   INTA still yields the spurious IRQ 7 / IRQ 15 in level-triggered mode, and whenever the
//!   requesting input is masked or out-prioritised between INTR and INTA.
//! * 8080/8085 mode (ICW4 µPM = 0), buffered mode and the ICW1 ADI bit are accepted and ignored:
//!   the chips always behave as in 8086 mode (one vector byte per INTA cycle).
//! * The cascade wiring is fixed (slave INTR → master IR2). It is active when the master was
//!   initialized in cascade mode (ICW1 SNGL = 0) with bit 2 set in its ICW3; the slave's ICW3
//!   (slave ID) is stored but not checked.
//! * After the INTA cycle that serviced the cascade input, if the slave's INTR is still active
//!   (possible with auto-EOI or special mask mode on the slave) the master's IRR bit 2 is set
//!   again, so that the pending slave request is not stranded by the master's edge detector.

use crate::{Device, Nanos};

/// Master 8259A command port (ICW1, OCW2, OCW3 writes; IRR/ISR/poll reads). 8259A datasheet, A0 = 0.
pub const MASTER_COMMAND_PORT: u16 = 0x20;
/// Master 8259A data port (ICW2–ICW4, OCW1/IMR). 8259A datasheet, A0 = 1.
pub const MASTER_DATA_PORT: u16 = 0x21;
/// Slave 8259A command port. 8259A datasheet, A0 = 0.
pub const SLAVE_COMMAND_PORT: u16 = 0xA0;
/// Slave 8259A data port. 8259A datasheet, A0 = 1.
pub const SLAVE_DATA_PORT: u16 = 0xA1;
/// ELCR1: edge/level control of IRQ 0–7 (bit n = 1: IRQ n level-triggered). PIIX4 datasheet, ELCR1.
pub const ELCR1_PORT: u16 = 0x4D0;
/// ELCR2: edge/level control of IRQ 8–15. PIIX4 datasheet, ELCR2.
pub const ELCR2_PORT: u16 = 0x4D1;

/// ELCR1 bits that can be set: IRQ 0, 1 and 2 are always edge-triggered (PIIX4 datasheet, ELCR1).
const ELCR1_WRITABLE: u8 = 0xF8;
/// ELCR2 bits that can be set: IRQ 8 and 13 are always edge-triggered (PIIX4 datasheet, ELCR2).
const ELCR2_WRITABLE: u8 = 0xDE;

/// The master input the slave's INTR is wired to on the PC/AT.
const CASCADE_IR: u8 = 2;

/// Where a chip is in its ICW1–ICW4 initialization sequence (8259A datasheet, Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitStep {
    /// Initialized: data-port writes are OCW1.
    Ready,
    /// ICW1 received; the next data-port write is ICW2.
    Icw2,
    /// ICW2 received in cascade mode; the next data-port write is ICW3.
    Icw3,
    /// Waiting for ICW4 (ICW1 IC4 = 1).
    Icw4,
}

/// One 8259A.
#[derive(Debug, Clone)]
struct Chip {
    /// Interrupt request register.
    irr: u8,
    /// In-service register.
    isr: u8,
    /// Interrupt mask register (OCW1).
    imr: u8,
    /// Current level of each IR input (for edge detection).
    lines: u8,
    /// Edge/level control register (1 = level-triggered).
    elcr: u8,
    /// Bits of `elcr` that software may set.
    elcr_writable: u8,
    /// ICW1 LTIM: all inputs level-triggered.
    ltim: bool,
    /// ICW2 T7–T3: vector base (low three bits zero).
    vector_base: u8,
    /// Position in the initialization sequence.
    init: InitStep,
    /// ICW1 IC4.
    icw4_needed: bool,
    /// ICW1 SNGL.
    single: bool,
    /// ICW3 as written (master: inputs with a slave; slave: its ID).
    icw3: u8,
    /// ICW4 AEOI.
    auto_eoi: bool,
    /// ICW4 SFNM (special fully nested mode).
    special_fully_nested: bool,
    /// OCW2 "rotate in automatic EOI mode" state.
    rotate_on_aeoi: bool,
    /// OCW3 special mask mode.
    special_mask: bool,
    /// OCW3 RIS: the command port reads ISR (true) or IRR (false).
    read_isr: bool,
    /// OCW3 P: the next read is a poll.
    poll: bool,
    /// The IR level with the lowest priority (7 after ICW1; changed by rotation).
    lowest: u8,
    /// True for the master (the cascade logic applies to it).
    is_master: bool,
}

impl Chip {
    fn new(is_master: bool, vector_base: u8) -> Chip {
        Chip {
            irr: 0,
            isr: 0,
            imr: 0,
            lines: 0,
            elcr: 0,
            elcr_writable: if is_master { ELCR1_WRITABLE } else { ELCR2_WRITABLE },
            ltim: false,
            vector_base,
            init: InitStep::Ready,
            icw4_needed: true,
            single: false,
            icw3: if is_master { 1 << CASCADE_IR } else { CASCADE_IR },
            auto_eoi: false,
            special_fully_nested: false,
            rotate_on_aeoi: false,
            special_mask: false,
            read_isr: false,
            poll: false,
            lowest: 7,
            is_master,
        }
    }

    /// Mask of level-triggered inputs (ICW1 LTIM or ELCR).
    fn level_mask(&self) -> u8 {
        if self.ltim {
            0xFF
        } else {
            self.elcr
        }
    }

    /// Make IRR follow the input lines for level-triggered inputs.
    fn refresh_level_irr(&mut self) {
        let lm = self.level_mask();
        self.irr = (self.irr & !lm) | (self.lines & lm);
    }

    /// New level of input `ir` (0–7).
    fn set_line(&mut self, ir: u8, level: bool) {
        let m = 1u8 << (ir & 7);
        if self.level_mask() & m != 0 {
            if level {
                self.irr |= m;
            } else {
                self.irr &= !m;
            }
        } else if level && self.lines & m == 0 {
            // Edge sense: latch the rising edge.
            self.irr |= m;
        }
        if level {
            self.lines |= m;
        } else {
            self.lines &= !m;
        }
    }

    /// Priority rank of input `ir`: 0 is the highest priority.
    fn rank(&self, ir: u8) -> u8 {
        ir.wrapping_sub(self.lowest.wrapping_add(1)) & 7
    }

    /// The highest-priority input whose bit is set in `mask`.
    fn highest(&self, mask: u8) -> Option<u8> {
        (0..8u8).map(|r| (self.lowest.wrapping_add(1).wrapping_add(r)) & 7).find(|ir| mask & (1 << ir) != 0)
    }

    /// True when `ir` is a master input with a slave behind it.
    fn is_cascade_input(&self, ir: u8) -> bool {
        self.is_master && !self.single && self.icw3 & (1 << ir) != 0
    }

    /// The input the priority resolver would present on INTR, if any.
    fn pending(&self) -> Option<u8> {
        let ir = self.highest(self.irr & !self.imr)?;
        let mut in_service = self.isr;
        if self.special_mask {
            in_service &= !self.imr;
        }
        if let Some(s) = self.highest(in_service) {
            let (rr, rs) = (self.rank(ir), self.rank(s));
            // Special fully nested mode: a slave may interrupt again while its cascade input is
            // in service (it only presents requests of higher priority within the slave).
            let same_level_ok = self.special_fully_nested && s == ir && self.is_cascade_input(ir);
            if rr > rs || (rr == rs && !same_level_ok) {
                return None;
            }
        }
        Some(ir)
    }

    /// The INTA cycle (or poll read) for input `ir`: set ISR, clear an edge-latched IRR bit.
    fn intack(&mut self, ir: u8) {
        let m = 1u8 << ir;
        if self.level_mask() & m == 0 {
            self.irr &= !m;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.lowest = ir;
            }
        } else {
            self.isr |= m;
        }
    }

    /// OCW2 non-specific EOI: reset the highest-priority ISR bit (optionally rotating).
    fn non_specific_eoi(&mut self, rotate: bool) {
        if let Some(ir) = self.highest(self.isr) {
            self.isr &= !(1 << ir);
            if rotate {
                self.lowest = ir;
            }
        }
    }

    /// OCW2 specific EOI of level `ir` (optionally rotating so that `ir` becomes lowest).
    fn specific_eoi(&mut self, ir: u8, rotate: bool) {
        self.isr &= !(1 << ir);
        if rotate {
            self.lowest = ir;
        }
    }

    fn write_command(&mut self, v: u8) {
        if v & 0x10 != 0 {
            // ICW1.
            self.icw4_needed = v & 0x01 != 0;
            self.single = v & 0x02 != 0;
            self.ltim = v & 0x08 != 0;
            self.init = InitStep::Icw2;
            self.imr = 0;
            self.isr = 0;
            self.irr = 0;
            self.lowest = 7;
            self.special_mask = false;
            self.read_isr = false;
            self.poll = false;
            self.rotate_on_aeoi = false;
            if !self.icw4_needed {
                self.auto_eoi = false;
                self.special_fully_nested = false;
            }
            // The edge sense circuit is reset: an edge input that is high now must go low and
            // high again (`lines` keeps its level). Level inputs are requests while high.
            self.refresh_level_irr();
        } else if v & 0x08 != 0 {
            // OCW3.
            if v & 0x04 != 0 {
                self.poll = true;
            }
            if v & 0x02 != 0 {
                self.read_isr = v & 0x01 != 0;
            }
            if v & 0x40 != 0 {
                self.special_mask = v & 0x20 != 0;
            }
        } else {
            // OCW2: R, SL, EOI in bits 7–5, level L in bits 2–0.
            let l = v & 7;
            match v >> 5 {
                0b000 => self.rotate_on_aeoi = false,
                0b001 => self.non_specific_eoi(false),
                0b011 => self.specific_eoi(l, false),
                0b100 => self.rotate_on_aeoi = true,
                0b101 => self.non_specific_eoi(true),
                0b110 => self.lowest = l,
                0b111 => self.specific_eoi(l, true),
                _ => {} // 0b010: no operation
            }
        }
    }

    fn write_data(&mut self, v: u8) {
        match self.init {
            InitStep::Ready => self.imr = v,
            InitStep::Icw2 => {
                self.vector_base = v & 0xF8;
                self.init = if !self.single {
                    InitStep::Icw3
                } else if self.icw4_needed {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = v;
                self.init = if self.icw4_needed { InitStep::Icw4 } else { InitStep::Ready };
            }
            InitStep::Icw4 => {
                self.auto_eoi = v & 0x02 != 0;
                self.special_fully_nested = v & 0x10 != 0;
                self.init = InitStep::Ready;
            }
        }
    }

    /// Poll read (OCW3 P): acknowledge the highest pending input and return
    /// 0x80 | level, or 0 when nothing is pending.
    fn poll_read(&mut self) -> (u8, Option<u8>) {
        self.poll = false;
        match self.pending() {
            Some(ir) => {
                self.intack(ir);
                (0x80 | ir, Some(ir))
            }
            None => (0, None),
        }
    }
}

/// The master/slave Intel 8259A pair of a PC/AT plus the ELCR (8259A datasheet; PIIX4
/// datasheet, ELCR). IRQ 0–7 are the master's IR0–IR7, IRQ 8–15 the slave's IR0–IR7, and the
/// slave's INTR drives the master's IR2.
///
/// Ports (absolute port number as `offset`, see the module documentation): 0x20/0x21 master,
/// 0xA0/0xA1 slave, 0x4D0/0x4D1 ELCR1/ELCR2.
#[derive(Debug, Clone)]
pub struct Pic {
    master: Chip,
    slave: Chip,
}

impl Default for Pic {
    fn default() -> Self {
        Pic::new()
    }
}

impl Pic {
    /// A pair in the state the PC BIOS leaves it, so it is usable before the guest initializes
    /// it: cascade mode, edge-triggered, 8086 mode, vector bases 0x08 (master) and 0x70 (slave),
    /// IMR = IRR = ISR = 0, IR7 lowest priority, OCW3 reads IRR, ELCR = 0 (8259A datasheet,
    /// "Initialization Command Words").
    pub fn new() -> Pic {
        Pic { master: Chip::new(true, 0x08), slave: Chip::new(false, 0x70) }
    }

    /// Set the level of interrupt line `irq` (0–15) as driven by its device. Edge-triggered
    /// inputs latch a request in IRR on a low-to-high transition (a pulse — raise then lower —
    /// is enough); level-triggered inputs (ICW1 LTIM or the ELCR bit) request while high.
    /// IRQ 2 is the cascade input driven by the slave: `set_irq(2, _)` is ignored, as are
    /// lines above 15. 8259A datasheet, "Edge and Level Triggered Modes".
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            CASCADE_IR => {}
            0..=7 => self.master.set_line(irq, level),
            8..=15 => self.slave.set_line(irq - 8, level),
            _ => {}
        }
        self.sync_cascade();
    }

    /// The master's INTR output to the CPU: true when an unmasked request has a higher priority
    /// than everything in service (8259A datasheet, "Priority Resolver").
    pub fn has_interrupt(&self) -> bool {
        self.master.pending().is_some()
    }

    /// The CPU's interrupt-acknowledge (INTA) cycle: returns the 8-bit vector and updates IRR
    /// and ISR (ISR untouched in automatic-EOI mode). A request on the cascade input is passed to
    /// the slave, which supplies the vector. If the request vanished (or was masked) since INTR,
    /// the spurious vector of IR7 is returned without setting ISR: master base + 7 (IRQ 7), or,
    /// when the master saw IR2 but the slave has no request, slave base + 7 (IRQ 15) with the
    /// master's ISR bit 2 set, so the handler must EOI the master (8259A datasheet, "Interrupt
    /// Sequence" and "Cascading").
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.pending() {
            None => self.master.vector_base | 7,
            Some(ir) => {
                self.master.intack(ir);
                if ir == CASCADE_IR && self.master.is_cascade_input(ir) {
                    let v = match self.slave.pending() {
                        Some(s) => {
                            self.slave.intack(s);
                            self.slave.vector_base | s
                        }
                        None => self.slave.vector_base | 7,
                    };
                    self.sync_cascade();
                    self.relatch_cascade();
                    v
                } else {
                    self.master.vector_base | ir
                }
            }
        };
        self.sync_cascade();
        vector
    }

    /// IRR of both chips: bits 0–7 master, bits 8–15 slave (8259A datasheet, IRR).
    pub fn irr(&self) -> u16 {
        u16::from(self.master.irr) | (u16::from(self.slave.irr) << 8)
    }

    /// ISR of both chips: bits 0–7 master, bits 8–15 slave (8259A datasheet, ISR).
    pub fn isr(&self) -> u16 {
        u16::from(self.master.isr) | (u16::from(self.slave.isr) << 8)
    }

    /// IMR (OCW1) of both chips: bits 0–7 master, bits 8–15 slave (8259A datasheet, OCW1).
    pub fn imr(&self) -> u16 {
        u16::from(self.master.imr) | (u16::from(self.slave.imr) << 8)
    }

    /// ELCR1 | ELCR2 << 8: bit n set = IRQ n level-triggered (PIIX4 datasheet, ELCR).
    pub fn elcr(&self) -> u16 {
        u16::from(self.master.elcr) | (u16::from(self.slave.elcr) << 8)
    }

    /// Drive the master's IR2 from the slave's INTR.
    fn sync_cascade(&mut self) {
        let intr = self.slave.pending().is_some();
        self.master.set_line(CASCADE_IR, intr);
    }

    /// After the master serviced IR2: if the slave still requests, keep IR2 requested.
    fn relatch_cascade(&mut self) {
        if self.slave.pending().is_some() {
            self.master.irr |= 1 << CASCADE_IR;
        }
    }

    fn read_port(&mut self, port: u64) -> u8 {
        match port {
            0x20 | 0x21 | 0xA0 | 0xA1 => {
                let is_master = port < 0x80;
                let chip = if is_master { &mut self.master } else { &mut self.slave };
                let v = if chip.poll {
                    let (v, acked) = chip.poll_read();
                    if is_master && acked == Some(CASCADE_IR) {
                        self.sync_cascade();
                        self.relatch_cascade();
                    }
                    v
                } else if port & 1 == 0 {
                    if chip.read_isr {
                        chip.isr
                    } else {
                        chip.irr
                    }
                } else {
                    chip.imr
                };
                self.sync_cascade();
                v
            }
            0x4D0 => self.master.elcr,
            0x4D1 => self.slave.elcr,
            _ => 0xFF,
        }
    }

    fn write_port(&mut self, port: u64, v: u8) {
        match port {
            0x20 => self.master.write_command(v),
            0x21 => self.master.write_data(v),
            0xA0 => self.slave.write_command(v),
            0xA1 => self.slave.write_data(v),
            0x4D0 | 0x4D1 => {
                let chip = if port == 0x4D0 { &mut self.master } else { &mut self.slave };
                chip.elcr = v & chip.elcr_writable;
                chip.refresh_level_irr();
            }
            _ => return,
        }
        self.sync_cascade();
    }
}

impl Device for Pic {
    /// `offset` is the absolute port number. The first byte gets the register; extra bytes 0xFF.
    fn read(&mut self, _now: Nanos, offset: u64, data: &mut [u8]) {
        if data.is_empty() {
            return;
        }
        data.fill(0xFF);
        data[0] = self.read_port(offset);
    }

    /// `offset` is the absolute port number. Only the first byte is written.
    fn write(&mut self, _now: Nanos, offset: u64, data: &[u8]) {
        if let Some(&v) = data.first() {
            self.write_port(offset, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(p: &mut Pic, port: u64, v: u8) {
        p.write(0, port, &[v]);
    }

    fn inb(p: &mut Pic, port: u64) -> u8 {
        let mut b = [0u8];
        p.read(0, port, &mut b);
        b[0]
    }

    /// The Linux/BIOS initialization: ICW1 0x11, ICW2 base, ICW3 cascade, ICW4 8086.
    fn init(p: &mut Pic, master_base: u8, slave_base: u8, icw4: u8) {
        out(p, 0x20, 0x11);
        out(p, 0x21, master_base);
        out(p, 0x21, 0x04);
        out(p, 0x21, icw4);
        out(p, 0xA0, 0x11);
        out(p, 0xA1, slave_base);
        out(p, 0xA1, 0x02);
        out(p, 0xA1, icw4);
    }

    #[test]
    fn init_sequence_and_imr() {
        let mut p = Pic::new();
        out(&mut p, 0x21, 0xAB);
        init(&mut p, 0x20, 0x28, 0x01);
        // ICW1 clears IMR; subsequent data writes are OCW1.
        assert_eq!(p.imr(), 0);
        out(&mut p, 0x21, 0xFB);
        out(&mut p, 0xA1, 0xFF);
        assert_eq!(inb(&mut p, 0x21), 0xFB);
        assert_eq!(inb(&mut p, 0xA1), 0xFF);
        assert_eq!(p.imr(), 0xFFFB);
        // Vector bases from ICW2.
        out(&mut p, 0x21, 0x00);
        p.set_irq(1, true);
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x21);
    }

    #[test]
    fn single_mode_without_icw4_skips_icw3() {
        let mut p = Pic::new();
        out(&mut p, 0x20, 0x12); // ICW1: SNGL, no ICW4
        out(&mut p, 0x21, 0x40); // ICW2
        out(&mut p, 0x21, 0x0F); // already OCW1
        assert_eq!(inb(&mut p, 0x21), 0x0F);
    }

    #[test]
    fn priority_and_eoi() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        p.set_irq(3, true);
        p.set_irq(5, true);
        assert_eq!(p.acknowledge(), 0x23);
        assert_eq!(p.isr(), 1 << 3);
        // IRQ 5 is lower priority than IRQ 3 in service.
        assert!(!p.has_interrupt());
        // A higher-priority request nests.
        p.set_irq(1, true);
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x21);
        assert_eq!(p.isr(), (1 << 3) | (1 << 1));
        // Non-specific EOI clears the highest-priority ISR bit (1).
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.isr(), 1 << 3);
        assert!(!p.has_interrupt());
        // Specific EOI of level 3.
        out(&mut p, 0x20, 0x63);
        assert_eq!(p.isr(), 0);
        assert_eq!(p.acknowledge(), 0x25);
        // OCW3 read ISR / IRR.
        out(&mut p, 0x20, 0x0B);
        assert_eq!(inb(&mut p, 0x20), 1 << 5);
        out(&mut p, 0x20, 0x0A);
        assert_eq!(inb(&mut p, 0x20), 0);
    }

    #[test]
    fn edge_detection_needs_new_rising_edge() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        p.set_irq(4, true);
        assert_eq!(p.acknowledge(), 0x24);
        out(&mut p, 0x20, 0x20);
        // Line still high: no new edge, no new request.
        p.set_irq(4, true);
        assert!(!p.has_interrupt());
        p.set_irq(4, false);
        p.set_irq(4, true);
        assert!(p.has_interrupt());
        // A pulse is latched.
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        p.set_irq(0, true);
        p.set_irq(0, false);
        assert_eq!(p.irr(), 1);
        assert_eq!(p.acknowledge(), 0x20);
        assert_eq!(p.irr(), 0);
    }

    #[test]
    fn rotation() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        // Set priority: IR4 lowest, so IR5 is highest.
        out(&mut p, 0x20, 0xC4);
        p.set_irq(3, true);
        p.set_irq(6, true);
        assert_eq!(p.acknowledge(), 0x26);
        // Rotate on non-specific EOI: IR6 becomes lowest, IR7 highest, then IR0...
        out(&mut p, 0x20, 0xA0);
        assert_eq!(p.isr(), 0);
        p.set_irq(7, true);
        assert_eq!(p.acknowledge(), 0x27);
        // Rotate on specific EOI of 7: IR0 highest.
        out(&mut p, 0x20, 0xE7);
        p.set_irq(0, true);
        assert_eq!(p.acknowledge(), 0x20);
        out(&mut p, 0x20, 0x60);
        assert_eq!(p.acknowledge(), 0x23);
    }

    #[test]
    fn auto_eoi_leaves_isr_clear() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x03);
        p.set_irq(1, true);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x21);
        assert_eq!(p.isr(), 0);
        assert_eq!(p.acknowledge(), 0x23);
    }

    #[test]
    fn spurious_irq7_when_request_vanishes() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        out(&mut p, 0x4D0, 0x20); // IRQ 5 level-triggered
        assert_eq!(inb(&mut p, 0x4D0), 0x20);
        p.set_irq(5, true);
        assert!(p.has_interrupt());
        p.set_irq(5, false); // withdrawn before INTA
        assert_eq!(p.acknowledge(), 0x27);
        assert_eq!(p.isr(), 0, "spurious IR7 does not set ISR");
        // Masked between INTR and INTA: same.
        p.set_irq(3, true);
        out(&mut p, 0x21, 0x08);
        assert_eq!(p.acknowledge(), 0x27);
        assert_eq!(p.isr(), 0);
    }

    #[test]
    fn level_triggered_irr_follows_line() {
        let mut p = Pic::new();
        out(&mut p, 0x20, 0x19); // ICW1 with LTIM
        out(&mut p, 0x21, 0x20);
        out(&mut p, 0x21, 0x04);
        out(&mut p, 0x21, 0x01);
        p.set_irq(6, true);
        assert_eq!(p.acknowledge(), 0x26);
        assert_eq!(p.irr() & 0x40, 0x40, "level IRR stays while the line is high");
        out(&mut p, 0x20, 0x20);
        assert!(p.has_interrupt());
        p.set_irq(6, false);
        assert!(!p.has_interrupt());
    }

    #[test]
    fn elcr_reserved_bits() {
        let mut p = Pic::new();
        out(&mut p, 0x4D0, 0xFF);
        out(&mut p, 0x4D1, 0xFF);
        assert_eq!(p.elcr(), 0xDEF8);
    }

    #[test]
    fn cascade() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        p.set_irq(12, true);
        assert!(p.has_interrupt());
        assert_eq!(p.irr() & 0x04, 0x04);
        assert_eq!(p.acknowledge(), 0x2C);
        assert_eq!(p.isr(), (1 << 12) | (1 << 2));
        // Another slave request of lower priority waits.
        p.set_irq(14, true);
        assert!(!p.has_interrupt());
        // EOI slave then master.
        out(&mut p, 0xA0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x2E);
        out(&mut p, 0xA0, 0x20);
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.isr(), 0);
        assert!(!p.has_interrupt());
        // Masking IR2 on the master masks the whole slave.
        out(&mut p, 0x21, 0x04);
        p.set_irq(9, true);
        assert!(!p.has_interrupt());
        out(&mut p, 0x21, 0x00);
        assert_eq!(p.acknowledge(), 0x29);
    }

    #[test]
    fn slave_spurious_irq15_leaves_master_ir2_in_service() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        out(&mut p, 0x4D1, 0x02); // IRQ 9 level-triggered
        p.set_irq(9, true);
        assert!(p.has_interrupt());
        p.set_irq(9, false);
        // The master latched the slave's INTR edge on IR2 and still requests.
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x2F);
        assert_eq!(p.isr(), 1 << 2, "master ISR2 set, slave ISR untouched");
        out(&mut p, 0x20, 0x20);
        assert_eq!(p.isr(), 0);
        assert!(!p.has_interrupt());
    }

    #[test]
    fn slave_auto_eoi_does_not_strand_requests() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x03);
        p.set_irq(8, true);
        p.set_irq(10, true);
        assert_eq!(p.acknowledge(), 0x28);
        assert_eq!(p.acknowledge(), 0x2A);
        assert!(!p.has_interrupt());
    }

    #[test]
    fn special_fully_nested_mode() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x11); // master and slave with SFNM
        p.set_irq(12, true);
        assert_eq!(p.acknowledge(), 0x2C);
        p.set_irq(9, true); // higher priority within the slave
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x29);
    }

    #[test]
    fn special_mask_mode() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        p.set_irq(3, true);
        assert_eq!(p.acknowledge(), 0x23);
        p.set_irq(5, true);
        assert!(!p.has_interrupt());
        out(&mut p, 0x21, 0x08); // mask IR3
        out(&mut p, 0x20, 0x68); // OCW3: set special mask mode
        assert!(p.has_interrupt());
        assert_eq!(p.acknowledge(), 0x25);
        out(&mut p, 0x20, 0x48); // reset special mask mode
        out(&mut p, 0x20, 0x65); // specific EOI 5
        out(&mut p, 0x20, 0x63);
        assert_eq!(p.isr(), 0);
    }

    #[test]
    fn poll_mode() {
        let mut p = Pic::new();
        init(&mut p, 0x20, 0x28, 0x01);
        out(&mut p, 0x20, 0x0C); // OCW3 poll
        assert_eq!(inb(&mut p, 0x20), 0x00);
        p.set_irq(6, true);
        p.set_irq(4, true);
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x21), 0x84);
        assert_eq!(p.isr(), 1 << 4);
        // Without the poll command, reads are IRR/IMR again.
        assert_eq!(inb(&mut p, 0x20), 1 << 6);
        out(&mut p, 0x20, 0x20);
        // Poll the slave through the cascade.
        p.set_irq(11, true);
        out(&mut p, 0x20, 0x0C);
        assert_eq!(inb(&mut p, 0x20), 0x82);
        out(&mut p, 0xA0, 0x0C);
        assert_eq!(inb(&mut p, 0xA0), 0x83);
        assert_eq!(p.isr(), (1 << 11) | (1 << 2));
    }

    #[test]
    fn odd_accesses_never_panic() {
        let mut p = Pic::new();
        let mut buf = [0u8; 4];
        p.read(0, 0x20, &mut buf);
        assert_eq!(&buf[1..], &[0xFF, 0xFF, 0xFF]);
        p.read(0, 0x1234, &mut buf);
        assert_eq!(buf, [0xFF; 4]);
        p.read(0, 0x20, &mut []);
        p.write(0, 0x20, &[]);
        p.write(0, u64::MAX, &[1, 2, 3, 4]);
        for v in 0..=255u8 {
            for port in [0x20u64, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1] {
                p.write(0, port, &[v]);
                p.read(0, port, &mut buf);
                p.set_irq(v & 15, v & 1 != 0);
                let _ = p.acknowledge();
            }
        }
        p.set_irq(200, true);
    }
}
