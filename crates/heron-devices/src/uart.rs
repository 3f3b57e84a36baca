//! National Semiconductor PC16550D-compatible UART ("16550A"), as found at COM1 (ports
//! 0x3F8–0x3FF, IRQ 4) on PCs.
//!
//! Register names follow the PC16550D datasheet (RBR, THR, IER, IIR, FCR, LCR, MCR, LSR, MSR,
//! SCR, DLL, DLM). The model is register-accurate enough for Linux's 8250 driver to identify it
//! as a 16550A (autoconfig: IER scratch test, MCR loopback test of MSR, FIFO detection through
//! IIR bits 7:6 after an FCR write) and to pass its THRE-interrupt probes.
//!
//! Modelling choices (documented deviations from real silicon):
//!
//! * **No baud-rate timing.** Transmission is instantaneous: a byte written to THR leaves at once
//!   (to the host output buffer, or to the RX FIFO in loopback mode), so LSR.THRE and LSR.TEMT
//!   always read 1 and the TX FIFO never holds data. DLL/DLM and LCR are stored but do not slow
//!   anything down.
//! * **Character timeout is immediate.** With no character time, "4 character times without
//!   activity" has always elapsed: in FIFO mode, whenever the RX FIFO holds data below the trigger
//!   level, the character-timeout interrupt (IIR = 0xCC) is pending. The machine feeds host input
//!   at its own pace through [`Uart::receive`].
//! * **Host input is flow-controlled, not overrun.** [`Uart::receive`] accepts at most
//!   [`Uart::rx_space`] bytes and reports how many it took; the machine keeps the rest. LSR.OE can
//!   still be raised by the guest itself in loopback mode (THR written while the RX FIFO is full).
//! * **No host I/O.** Transmitted bytes are appended to an output buffer that the machine drains
//!   with [`Uart::take_output`] or [`Uart::drain_output`].
//! * **8-bit device on a wider access:** a 2- or 4-byte port access acts on the register at the
//!   first byte's offset; the extra bytes of a read return 0xFF and the extra bytes of a write are
//!   ignored. Offsets outside 0..=7 read 0xFF and ignore writes.

use std::collections::VecDeque;

use crate::{Device, Nanos};

/// Conventional I/O base of COM1 (IBM PC/AT). The machine registers the UART here; `offset` is 0..=7.
pub const COM1_BASE: u16 = 0x3F8;
/// Conventional ISA IRQ line of COM1.
pub const COM1_IRQ: u8 = 4;
/// Depth of the RX and TX FIFOs in FIFO mode, in bytes (PC16550D datasheet, FIFO operation).
pub const FIFO_SIZE: usize = 16;

// Register offsets (PC16550D datasheet, Table II "Register Addresses").
const REG_RBR_THR_DLL: u64 = 0;
const REG_IER_DLM: u64 = 1;
const REG_IIR_FCR: u64 = 2;
const REG_LCR: u64 = 3;
const REG_MCR: u64 = 4;
const REG_LSR: u64 = 5;
const REG_MSR: u64 = 6;
const REG_SCR: u64 = 7;

// IER bits.
const IER_ERBFI: u8 = 0x01; // received data available
const IER_ETBEI: u8 = 0x02; // THR empty
const IER_ELSI: u8 = 0x04; // receiver line status
const IER_EDSSI: u8 = 0x08; // modem status

// IIR interrupt identification codes (bits 3:0).
const IIR_NO_INT: u8 = 0x01;
const IIR_MODEM_STATUS: u8 = 0x00;
const IIR_THRE: u8 = 0x02;
const IIR_RDA: u8 = 0x04;
const IIR_LINE_STATUS: u8 = 0x06;
const IIR_CHAR_TIMEOUT: u8 = 0x0C;
const IIR_FIFOS_ENABLED: u8 = 0xC0;

// FCR bits.
const FCR_FIFO_ENABLE: u8 = 0x01;
const FCR_RX_RESET: u8 = 0x02;
#[cfg_attr(not(test), allow(dead_code))]
const FCR_TX_RESET: u8 = 0x04;
const FCR_DMA_MODE: u8 = 0x08;
const FCR_TRIGGER_MASK: u8 = 0xC0;

// LCR bits.
const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
const MCR_MASK: u8 = 0x1F;

// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_PE: u8 = 0x04;
const LSR_FE: u8 = 0x08;
const LSR_BI: u8 = 0x10;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;
const LSR_ERRORS: u8 = LSR_OE | LSR_PE | LSR_FE | LSR_BI;

// MSR bits.
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

/// A PC16550D-compatible UART (16550A): registers, 16-byte FIFOs, interrupt logic, loopback.
///
/// Create with [`Uart::new`], register at [`COM1_BASE`] (port offsets 0..=7), feed host input
/// with [`Uart::receive`] (at most [`Uart::rx_space`] bytes), drain guest output with
/// [`Uart::take_output`], and route [`Uart::irq_level`] to IRQ [`COM1_IRQ`] after every access.
#[derive(Debug, Clone)]
pub struct Uart {
    /// IER, bits 3:0 (bits 7:4 read as 0 on a 16550A).
    ier: u8,
    /// LCR (all 8 bits read back).
    lcr: u8,
    /// MCR, bits 4:0.
    mcr: u8,
    /// FCR as programmed (only the FIFO-enable, DMA-mode and trigger bits are kept).
    fcr: u8,
    /// Sticky LSR error bits (OE, PE, FE, BI), cleared by an LSR read.
    lsr_errors: u8,
    /// MSR delta bits 3:0, cleared by an MSR read.
    msr_deltas: u8,
    /// Current MSR input bits 7:4 as seen by the chip (external or looped back).
    msr_inputs: u8,
    /// External modem-status inputs (CTS/DSR/RI/DCD in MSR bit positions 7:4).
    external_inputs: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// RX FIFO (a one-byte RBR when FIFOs are disabled).
    rx: VecDeque<u8>,
    /// Value returned when RBR is read while empty (the last byte received).
    last_rbr: u8,
    /// THRE interrupt latch: set when THR becomes empty with ETBEI set, or when ETBEI is
    /// enabled while THR is empty; cleared by an IIR read reporting it or by a THR write.
    thre_pending: bool,
    /// Transmitted bytes waiting for the machine.
    output: Vec<u8>,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// A UART in its master-reset state (PC16550D datasheet, Table IV "UART Reset Configuration"):
    /// IER = 0, IIR = 0x01, FCR = 0, LCR = 0, MCR = 0, LSR = 0x60, MSR deltas = 0. The divisor
    /// latch (undefined at reset) starts at 12 (9600 baud from 1.8432 MHz); SCR starts at 0.
    /// External modem inputs CTS, DSR and DCD are asserted (a null-modem host connection).
    pub fn new() -> Self {
        let external_inputs = MSR_CTS | MSR_DSR | MSR_DCD;
        Uart {
            ier: 0,
            lcr: 0,
            mcr: 0,
            fcr: 0,
            lsr_errors: 0,
            msr_deltas: 0,
            msr_inputs: external_inputs,
            external_inputs,
            scr: 0,
            dll: 12,
            dlm: 0,
            rx: VecDeque::with_capacity(FIFO_SIZE),
            last_rbr: 0,
            thre_pending: false,
            output: Vec::new(),
        }
    }

    /// Level of the IRQ output as wired on a PC (IRQ 4 for COM1): an interrupt is pending (IIR
    /// bit 0 = 0) AND MCR.OUT2 gates it onto the bus. In loopback mode the OUT2 pin is forced
    /// inactive (PC16550D datasheet, MCR bit 4), so the line is low. Sample after every access.
    pub fn irq_level(&self) -> bool {
        self.mcr & MCR_OUT2 != 0 && self.mcr & MCR_LOOP == 0 && self.pending_interrupt().is_some()
    }

    /// Free space in the receiver, in bytes: 16 minus the RX FIFO fill in FIFO mode, 1 or 0 in
    /// character (16450) mode; 0 in loopback mode, where the serial input is disconnected
    /// (PC16550D datasheet, MCR bit 4).
    pub fn rx_space(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity().saturating_sub(self.rx.len())
        }
    }

    /// Host input arriving on the serial line. Stores at most [`Uart::rx_space`] bytes into the
    /// RX FIFO / RBR and returns how many it took; the caller keeps the rest for later (no
    /// overrun is generated). Raises received-data or character-timeout interrupts as enabled.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.rx_space());
        self.rx.extend(&bytes[..n]);
        n
    }

    /// Takes all bytes the guest has transmitted (when not in loopback mode) since the last call.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// Passes the transmitted bytes to `f` (once, if any) and empties the output buffer.
    pub fn drain_output(&mut self, mut f: impl FnMut(&[u8])) {
        if !self.output.is_empty() {
            f(&self.output);
            self.output.clear();
        }
    }

    /// True if transmitted bytes are waiting in the output buffer.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Sets the external modem-status inputs (PC16550D datasheet, MSR bits 4–7: CTS, DSR, RI,
    /// DCD; `true` = asserted). Changes set the MSR delta bits (DCTS, DDSR, TERI on RI's trailing
    /// edge, DDCD). Ignored by the chip while in loopback mode. Default: CTS, DSR, DCD asserted.
    pub fn set_modem_inputs(&mut self, cts: bool, dsr: bool, ri: bool, dcd: bool) {
        let mut v = 0;
        if cts {
            v |= MSR_CTS;
        }
        if dsr {
            v |= MSR_DSR;
        }
        if ri {
            v |= MSR_RI;
        }
        if dcd {
            v |= MSR_DCD;
        }
        self.external_inputs = v;
        self.update_msr_inputs();
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_FIFO_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    /// RX FIFO trigger level in bytes (PC16550D datasheet, FCR bits 7:6).
    fn rx_trigger(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// One character arriving at the receiver from the chip's own transmitter (loopback).
    /// A full FIFO loses the new character; a full RBR in 16450 mode is overwritten. Both set OE.
    fn push_rx_internal(&mut self, byte: u8) {
        if self.rx.len() < self.rx_capacity() {
            self.rx.push_back(byte);
        } else {
            self.lsr_errors |= LSR_OE;
            if !self.fifo_enabled() {
                self.rx.clear();
                self.rx.push_back(byte);
            }
        }
    }

    /// Recomputes MSR bits 7:4 from the external inputs or, in loopback mode, from the MCR
    /// outputs (RTS→CTS, DTR→DSR, OUT1→RI, OUT2→DCD), accumulating the delta bits.
    fn update_msr_inputs(&mut self) {
        let new = if self.loopback() {
            let mut v = 0;
            if self.mcr & MCR_RTS != 0 {
                v |= MSR_CTS;
            }
            if self.mcr & MCR_DTR != 0 {
                v |= MSR_DSR;
            }
            if self.mcr & MCR_OUT1 != 0 {
                v |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                v |= MSR_DCD;
            }
            v
        } else {
            self.external_inputs
        };
        let changed = new ^ self.msr_inputs;
        if changed & MSR_CTS != 0 {
            self.msr_deltas |= MSR_DCTS;
        }
        if changed & MSR_DSR != 0 {
            self.msr_deltas |= MSR_DDSR;
        }
        if changed & MSR_RI != 0 && new & MSR_RI == 0 {
            self.msr_deltas |= MSR_TERI;
        }
        if changed & MSR_DCD != 0 {
            self.msr_deltas |= MSR_DDCD;
        }
        self.msr_inputs = new;
    }

    /// Highest-priority pending and enabled interrupt, as its IIR bits 3:0 code
    /// (PC16550D datasheet, Table V "Interrupt Control Functions").
    fn pending_interrupt(&self) -> Option<u8> {
        if self.ier & IER_ELSI != 0 && self.lsr_errors & LSR_ERRORS != 0 {
            return Some(IIR_LINE_STATUS);
        }
        if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            if !self.fifo_enabled() || self.rx.len() >= self.rx_trigger() {
                return Some(IIR_RDA);
            }
            // Below the trigger level: the character timeout has (immediately) expired.
            return Some(IIR_CHAR_TIMEOUT);
        }
        if self.ier & IER_ETBEI != 0 && self.thre_pending {
            return Some(IIR_THRE);
        }
        if self.ier & IER_EDSSI != 0 && self.msr_deltas != 0 {
            return Some(IIR_MODEM_STATUS);
        }
        None
    }

    fn read_reg(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            REG_RBR_THR_DLL if dlab => self.dll,
            REG_RBR_THR_DLL => {
                if let Some(b) = self.rx.pop_front() {
                    self.last_rbr = b;
                }
                self.last_rbr
            }
            REG_IER_DLM if dlab => self.dlm,
            REG_IER_DLM => self.ier,
            REG_IIR_FCR => {
                let fifo_bits = if self.fifo_enabled() {
                    IIR_FIFOS_ENABLED
                } else {
                    0
                };
                match self.pending_interrupt() {
                    Some(code) => {
                        if code == IIR_THRE {
                            // Reading IIR while THRE is the reported source clears it.
                            self.thre_pending = false;
                        }
                        fifo_bits | code
                    }
                    None => fifo_bits | IIR_NO_INT,
                }
            }
            REG_LCR => self.lcr,
            REG_MCR => self.mcr,
            REG_LSR => {
                let mut v = self.lsr_errors | LSR_THRE | LSR_TEMT;
                if !self.rx.is_empty() {
                    v |= LSR_DR;
                }
                self.lsr_errors &= !LSR_ERRORS;
                v
            }
            REG_MSR => {
                let v = self.msr_inputs | self.msr_deltas;
                self.msr_deltas = 0;
                v
            }
            REG_SCR => self.scr,
            _ => 0xFF,
        }
    }

    fn write_reg(&mut self, offset: u64, val: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            REG_RBR_THR_DLL if dlab => self.dll = val,
            REG_RBR_THR_DLL => {
                // Writing THR clears a pending THRE interrupt ...
                self.thre_pending = false;
                if self.loopback() {
                    self.push_rx_internal(val);
                } else {
                    self.output.push(val);
                }
                // ... and, since transmission is instantaneous, THR is empty again at once,
                // which (as when a real 16550 moves THR into the TSR) re-raises THRE.
                if self.ier & IER_ETBEI != 0 {
                    self.thre_pending = true;
                }
            }
            REG_IER_DLM if dlab => self.dlm = val,
            REG_IER_DLM => {
                let old = self.ier;
                self.ier = val & 0x0F;
                if self.ier & IER_ETBEI == 0 {
                    self.thre_pending = false;
                } else if old & IER_ETBEI == 0 {
                    // Enabling ETBEI while THR is empty raises the THRE interrupt (Linux's
                    // 8250 driver relies on this when it probes for UART_BUG_THRE/TXEN).
                    self.thre_pending = true;
                }
            }
            REG_IIR_FCR => self.write_fcr(val),
            REG_LCR => self.lcr = val,
            REG_MCR => {
                self.mcr = val & MCR_MASK;
                self.update_msr_inputs();
            }
            // LSR and MSR writes are for factory test only; ignored.
            REG_LSR | REG_MSR => {}
            REG_SCR => self.scr = val,
            _ => {}
        }
    }

    /// FCR write (PC16550D datasheet, FCR): bit 0 enables the FIFOs (changing it clears both
    /// FIFOs; when it is 0 the other bits are not programmed), bits 1/2 reset the RX/TX FIFOs
    /// (self-clearing), bit 3 DMA mode, bits 7:6 RX trigger level.
    fn write_fcr(&mut self, val: u8) {
        let enable = val & FCR_FIFO_ENABLE != 0;
        if enable != self.fifo_enabled() {
            self.rx.clear();
        }
        if enable {
            self.fcr = val & (FCR_FIFO_ENABLE | FCR_DMA_MODE | FCR_TRIGGER_MASK);
            if val & FCR_RX_RESET != 0 {
                self.rx.clear();
            }
            // FCR_TX_RESET needs no action: the TX FIFO is always empty (instantaneous
            // transmission).
        } else {
            self.fcr &= !FCR_FIFO_ENABLE;
        }
    }
}

impl Device for Uart {
    /// Register read at `offset` 0..=7 from the base. Multi-byte reads act on the first byte's
    /// register; extra bytes read 0xFF.
    fn read(&mut self, _now: Nanos, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        if let Some(first) = data.first_mut() {
            *first = self.read_reg(offset);
        }
    }

    /// Register write at `offset` 0..=7 from the base. Multi-byte writes act on the first byte.
    fn write(&mut self, _now: Nanos, offset: u64, data: &[u8]) {
        if let Some(&first) = data.first() {
            self.write_reg(offset, first);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(u: &mut Uart, off: u64) -> u8 {
        let mut b = [0u8];
        u.read(0, off, &mut b);
        b[0]
    }

    fn wr(u: &mut Uart, off: u64, v: u8) {
        u.write(0, off, &[v]);
    }

    #[test]
    fn reset_state() {
        let mut u = Uart::new();
        assert_eq!(rd(&mut u, REG_IER_DLM), 0);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0x01);
        assert_eq!(rd(&mut u, REG_LCR), 0);
        assert_eq!(rd(&mut u, REG_MCR), 0);
        assert_eq!(rd(&mut u, REG_LSR), 0x60);
        assert_eq!(rd(&mut u, REG_MSR) & 0x0F, 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn transmit_goes_to_output() {
        let mut u = Uart::new();
        for &b in b"hi\n" {
            wr(&mut u, 0, b);
        }
        assert_eq!(
            rd(&mut u, REG_LSR) & (LSR_THRE | LSR_TEMT),
            LSR_THRE | LSR_TEMT
        );
        assert_eq!(u.take_output(), b"hi\n");
        assert!(u.take_output().is_empty());
        wr(&mut u, 0, b'x');
        let mut got = Vec::new();
        u.drain_output(|b| got.extend_from_slice(b));
        assert_eq!(got, b"x");
        assert!(!u.has_output());
    }

    #[test]
    fn dlab_selects_divisor_latch() {
        let mut u = Uart::new();
        wr(&mut u, REG_LCR, 0x83);
        wr(&mut u, 0, 0x01);
        wr(&mut u, 1, 0x02);
        assert_eq!(rd(&mut u, 0), 0x01);
        assert_eq!(rd(&mut u, 1), 0x02);
        wr(&mut u, REG_LCR, 0x03);
        // IER untouched by the DLM write; THR write goes out, not into DLL.
        assert_eq!(rd(&mut u, 1), 0);
        wr(&mut u, 0, b'A');
        assert_eq!(u.take_output(), b"A");
        wr(&mut u, REG_LCR, 0x83);
        assert_eq!(rd(&mut u, 0), 0x01);
        assert_eq!(rd(&mut u, REG_LCR), 0x83);
    }

    #[test]
    fn loopback_tx_to_rx_and_modem_lines() {
        let mut u = Uart::new();
        rd(&mut u, REG_MSR);
        wr(&mut u, REG_MCR, MCR_LOOP);
        // All outputs inactive → inputs clear, deltas for CTS/DSR/DCD that dropped.
        let msr = rd(&mut u, REG_MSR);
        assert_eq!(msr & 0xF0, 0);
        assert_eq!(msr & 0x0F, MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_eq!(rd(&mut u, REG_MSR) & 0x0F, 0, "deltas clear on read");
        wr(&mut u, REG_MCR, MCR_LOOP | MCR_RTS);
        assert_eq!(rd(&mut u, REG_MSR), MSR_CTS | MSR_DCTS);
        wr(&mut u, REG_MCR, MCR_LOOP | MCR_DTR | MCR_OUT1 | MCR_OUT2);
        assert_eq!(
            rd(&mut u, REG_MSR),
            MSR_DSR | MSR_RI | MSR_DCD | MSR_DCTS | MSR_DDSR | MSR_DDCD
        );
        // RI trailing edge → TERI.
        wr(&mut u, REG_MCR, MCR_LOOP | MCR_DTR | MCR_OUT2);
        assert_eq!(rd(&mut u, REG_MSR) & 0x0F, MSR_TERI);
        // TX loops to RX, nothing goes to the host.
        assert_eq!(u.rx_space(), 0);
        assert_eq!(u.receive(b"zz"), 0);
        wr(&mut u, 0, 0x5A);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, LSR_DR);
        assert_eq!(rd(&mut u, 0), 0x5A);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, 0);
        assert!(u.take_output().is_empty());
        // Second byte while RBR full in 16450 mode: overrun.
        wr(&mut u, 0, 1);
        wr(&mut u, 0, 2);
        let lsr = rd(&mut u, REG_LSR);
        assert_eq!(lsr & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_OE, 0, "OE clears on LSR read");
        assert_eq!(rd(&mut u, 0), 2);
        // Leaving loopback restores the external inputs.
        wr(&mut u, REG_MCR, 0);
        assert_eq!(rd(&mut u, REG_MSR) & 0xF0, MSR_CTS | MSR_DSR | MSR_DCD);
    }

    #[test]
    fn loopback_gates_irq() {
        let mut u = Uart::new();
        wr(&mut u, REG_IER_DLM, IER_ERBFI);
        wr(&mut u, REG_MCR, MCR_LOOP | MCR_OUT2);
        wr(&mut u, 0, 0x42);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_RDA);
        assert!(!u.irq_level(), "OUT2 pin forced inactive in loopback");
        wr(&mut u, REG_MCR, MCR_OUT2);
        assert!(u.irq_level());
    }

    #[test]
    fn receive_respects_capacity() {
        let mut u = Uart::new();
        assert_eq!(u.rx_space(), 1);
        assert_eq!(u.receive(b"abc"), 1);
        assert_eq!(u.rx_space(), 0);
        assert_eq!(u.receive(b"bc"), 0);
        assert_eq!(rd(&mut u, 0), b'a');
        assert_eq!(rd(&mut u, REG_LSR) & LSR_OE, 0);
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE);
        assert_eq!(u.rx_space(), 16);
        let data: Vec<u8> = (0..20).collect();
        assert_eq!(u.receive(&data), 16);
        assert_eq!(u.rx_space(), 0);
        for i in 0..16 {
            assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, LSR_DR);
            assert_eq!(rd(&mut u, 0), i);
        }
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, 0);
        // Reading an empty RBR returns the last character.
        assert_eq!(rd(&mut u, 0), 15);
    }

    #[test]
    fn fifo_trigger_and_timeout_iir() {
        let mut u = Uart::new();
        wr(&mut u, REG_MCR, MCR_OUT2);
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE | 0x80); // trigger 8
        wr(&mut u, REG_IER_DLM, IER_ERBFI);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xC1);
        assert!(!u.irq_level());
        u.receive(b"abc");
        // Below trigger: character timeout.
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xCC);
        assert!(u.irq_level());
        u.receive(b"defgh");
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xC4);
        // Reading below the trigger level falls back to timeout, then none.
        rd(&mut u, 0);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xCC);
        for _ in 0..7 {
            rd(&mut u, 0);
        }
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xC1);
        assert!(!u.irq_level());
        // Trigger level 14.
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE | 0xC0);
        u.receive(&[0; 13]);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xCC);
        u.receive(&[0]);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xC4);
        // RX FIFO reset clears the data.
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE | FCR_RX_RESET | 0xC0);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, 0);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0xC1);
        // Disabling the FIFOs clears them and the IIR FIFO bits.
        u.receive(b"x");
        wr(&mut u, REG_IIR_FCR, 0);
        assert_eq!(rd(&mut u, REG_LSR) & LSR_DR, 0);
        assert_eq!(rd(&mut u, REG_IIR_FCR), 0x01);
        u.receive(b"x");
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_RDA);
    }

    #[test]
    fn thre_interrupt_and_clearing() {
        let mut u = Uart::new();
        wr(&mut u, REG_MCR, MCR_OUT2);
        wr(&mut u, REG_IER_DLM, IER_ETBEI);
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_THRE);
        // Cleared by the IIR read that reported it.
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_NO_INT);
        // Writing THR: byte leaves at once, THR empty again → re-raised.
        wr(&mut u, 0, b'a');
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_THRE);
        // Linux's THRE re-assert probe: IER=0 then IER=THRI must re-raise.
        wr(&mut u, REG_IER_DLM, 0);
        assert!(!u.irq_level());
        wr(&mut u, REG_IER_DLM, IER_ETBEI);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_THRE);
        // Rewriting IER without an ETBEI rising edge does not re-raise it.
        wr(&mut u, REG_IER_DLM, IER_ETBEI | IER_ERBFI);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_NO_INT);
        // No OUT2, no IRQ line even with a pending interrupt.
        wr(&mut u, REG_MCR, 0);
        wr(&mut u, 0, b'b');
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_THRE);
    }

    #[test]
    fn interrupt_priorities() {
        let mut u = Uart::new();
        wr(&mut u, REG_MCR, MCR_OUT2);
        wr(&mut u, REG_IER_DLM, 0x0F);
        // THRE pending (ETBEI rising edge), and a modem status change.
        u.set_modem_inputs(false, true, false, true);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_THRE);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_MODEM_STATUS);
        rd(&mut u, REG_MSR);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_NO_INT);
        // Loopback overrun: line status beats received data.
        wr(&mut u, REG_IER_DLM, IER_ERBFI | IER_ELSI);
        wr(&mut u, REG_MCR, MCR_OUT2 | MCR_LOOP);
        wr(&mut u, 0, 1);
        wr(&mut u, 0, 2);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_LINE_STATUS);
        assert_eq!(rd(&mut u, REG_LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_RDA);
        rd(&mut u, 0);
        assert_eq!(rd(&mut u, REG_IIR_FCR), IIR_NO_INT);
    }

    #[test]
    fn wide_and_out_of_range_accesses() {
        let mut u = Uart::new();
        wr(&mut u, REG_SCR, 0xA5);
        let mut buf = [0u8; 4];
        u.read(0, REG_SCR, &mut buf);
        assert_eq!(buf, [0xA5, 0xFF, 0xFF, 0xFF]);
        u.write(0, REG_SCR, &[0x11, 0x22]);
        assert_eq!(rd(&mut u, REG_SCR), 0x11);
        u.read(0, 8, &mut buf);
        assert_eq!(buf, [0xFF; 4]);
        u.write(0, 1000, &[1, 2, 3, 4]);
        u.write(0, 0, &[]);
        u.read(0, 0, &mut []);
        assert_eq!(rd(&mut u, REG_SCR), 0x11);
    }

    /// The probing done by Linux's drivers/tty/serial/8250 `autoconfig()` and
    /// `autoconfig_16550a()`, then the startup THRE/TXEN probes, in order.
    #[test]
    fn linux_8250_autoconfig_identifies_16550a() {
        let mut u = Uart::new();
        // IER scratch test.
        let scratch = rd(&mut u, 1);
        wr(&mut u, 1, 0);
        let scratch2 = rd(&mut u, 1) & 0x0F;
        wr(&mut u, 1, 0x0F);
        let scratch3 = rd(&mut u, 1) & 0x0F;
        wr(&mut u, 1, scratch);
        assert_eq!((scratch2, scratch3), (0, 0x0F));
        let save_mcr = rd(&mut u, REG_MCR);
        let save_lcr = rd(&mut u, REG_LCR);
        // Loopback test: MCR = LOOP | OUT2 | RTS → MSR inputs CTS | DCD.
        wr(&mut u, REG_MCR, MCR_LOOP | 0x0A);
        let status1 = rd(&mut u, REG_MSR) & 0xF0;
        wr(&mut u, REG_MCR, save_mcr);
        assert_eq!(status1, 0x90);
        // EFR probe (LCR = 0xBF) then FIFO detection.
        wr(&mut u, REG_LCR, 0xBF);
        wr(&mut u, 2, 0);
        wr(&mut u, REG_LCR, 0);
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE);
        let scratch = rd(&mut u, REG_IIR_FCR) >> 6;
        assert_eq!(scratch, 3, "FIFO bits → 16550A path");
        // autoconfig_16550a: EFR at LCR=0x80 must not read 0 (ST16C650V1 check).
        wr(&mut u, REG_LCR, 0x80);
        assert_ne!(rd(&mut u, 2), 0);
        // EFR at LCR=0xBF must not read 0 (16650/16850 check).
        wr(&mut u, REG_LCR, 0xBF);
        assert_ne!(rd(&mut u, 2), 0);
        // NS SuperIO check: LOOP bit must not show through IIR at LCR=0xE0.
        wr(&mut u, REG_LCR, 0);
        let s1 = rd(&mut u, REG_MCR);
        wr(&mut u, REG_LCR, 0xE0);
        let s2 = rd(&mut u, 2);
        assert_eq!((s1 ^ s2) & MCR_LOOP, 0);
        wr(&mut u, REG_LCR, 0);
        wr(&mut u, REG_MCR, s1 ^ MCR_LOOP);
        wr(&mut u, REG_LCR, 0xE0);
        let s2 = rd(&mut u, 2);
        wr(&mut u, REG_LCR, 0);
        wr(&mut u, REG_MCR, s1);
        assert_eq!((s2 ^ s1) & MCR_LOOP, 0, "not an NS16550 SuperIO");
        // TI16750 check: 64-byte FIFO bit must not appear.
        wr(&mut u, REG_LCR, 0);
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE | 0x20);
        let st1 = rd(&mut u, REG_IIR_FCR) >> 5;
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE);
        wr(&mut u, REG_LCR, 0x80);
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE | 0x20);
        let st2 = rd(&mut u, REG_IIR_FCR) >> 5;
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE);
        wr(&mut u, REG_LCR, 0);
        assert_eq!((st1, st2), (6, 6), "not a 16750");
        // XScale UUE check: IER bit 6 must not stick.
        let iersave = rd(&mut u, 1);
        wr(&mut u, 1, iersave & !0x40);
        assert_eq!(rd(&mut u, 1) & 0x40, 0);
        wr(&mut u, 1, iersave | 0x40);
        assert_eq!(rd(&mut u, 1) & 0x40, 0);
        wr(&mut u, 1, iersave);
        wr(&mut u, REG_LCR, save_lcr);
        // Reset: clear FIFOs, read RX, clear IER.
        wr(&mut u, REG_MCR, save_mcr);
        wr(&mut u, REG_IIR_FCR, FCR_FIFO_ENABLE);
        wr(
            &mut u,
            REG_IIR_FCR,
            FCR_FIFO_ENABLE | FCR_RX_RESET | FCR_TX_RESET,
        );
        wr(&mut u, REG_IIR_FCR, 0);
        rd(&mut u, 0);
        wr(&mut u, 1, 0);

        // serial8250_do_startup: FIFOs on, clear, read LSR/RX/IIR/MSR.
        wr(
            &mut u,
            REG_IIR_FCR,
            FCR_FIFO_ENABLE | FCR_RX_RESET | FCR_TX_RESET,
        );
        rd(&mut u, REG_LSR);
        rd(&mut u, 0);
        rd(&mut u, REG_IIR_FCR);
        rd(&mut u, REG_MSR);
        assert_ne!(rd(&mut u, REG_LSR), 0xFF);
        // THRE re-assert test (UART_BUG_THRE must not be set).
        wr(&mut u, 1, IER_ETBEI);
        let iir1 = rd(&mut u, REG_IIR_FCR);
        wr(&mut u, 1, 0);
        wr(&mut u, 1, IER_ETBEI);
        let iir = rd(&mut u, REG_IIR_FCR);
        wr(&mut u, 1, 0);
        assert_eq!(iir1 & IIR_NO_INT, 0);
        assert_eq!(iir & IIR_NO_INT, 0);
        // TXEN test: IER=THRI; LSR.TEMT set and IIR must show an interrupt.
        wr(&mut u, REG_LCR, 0x03);
        wr(&mut u, REG_MCR, MCR_OUT2 | MCR_RTS | MCR_DTR);
        wr(&mut u, 1, IER_ETBEI);
        let lsr = rd(&mut u, REG_LSR);
        let iir = rd(&mut u, REG_IIR_FCR);
        wr(&mut u, 1, 0);
        assert!(
            lsr & LSR_TEMT != 0 && iir & IIR_NO_INT == 0,
            "UART_BUG_TXEN not set"
        );
        assert_eq!(iir, 0xC2);
    }
}
