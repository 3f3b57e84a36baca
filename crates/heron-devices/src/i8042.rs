//! Intel 8042-compatible keyboard controller (PS/2 "i8042") with an attached PS/2 keyboard and
//! PS/2 mouse (aux device), at ports 0x60 (data) and 0x64 (status / command).
//!
//! References: IBM PC AT Technical Reference, "Keyboard Controller" (status register, command
//! byte, controller commands, output port); IBM PS/2 Hardware Interface Technical Reference,
//! "Keyboard and Auxiliary Device Controller", "Keyboard" and "Pointing Device" (device
//! commands and replies).
//!
//! Modelling choices (documented):
//!
//! * **Power-on state = after BIOS POST.** Heron can boot Linux directly without firmware, so the
//!   controller starts as a BIOS would leave it: command byte 0x47 (keyboard and aux interrupts
//!   enabled, SYS flag set, both interfaces enabled, scan-code translation on) and **A20 enabled**
//!   (output port bit 1 = 1): the Linux boot protocol expects A20 on.
//! * **Output buffer timing.** The controller has a one-byte output buffer; further replies wait
//!   in queues (controller replies first, then keyboard, then aux). When the guest reads port
//!   0x60 and another byte is waiting whose interrupt is enabled, the controller refills the
//!   buffer [`REFILL_DELAY_NS`] later (a deadline, see [`Device::next_deadline`]) so that the IRQ
//!   line visibly drops between bytes and an edge-triggered 8259A sees one edge per byte. If the
//!   next byte's interrupt is disabled (polling), the buffer is refilled at once.
//! * **IBF is always 0**: commands and data are processed instantly when written.
//! * **Interface disable** (command byte bits 4/5, commands 0xAD/0xA7) holds device bytes back
//!   until re-enabled; a byte written to the keyboard through port 0x60 re-enables the keyboard
//!   interface (as AT-compatible controllers do to clock it out). Controller replies and
//!   0xD2/0xD3 bytes are never held.
//! * **Scan-code translation** (command byte bit 6) is applied by the controller to keyboard bytes
//!   as they enter the output buffer. The keyboard model only emits replies (0xFA, 0xAA, 0xEE,
//!   0xFE, ID 0xAB 0x83, scan-set numbers), so only those bytes are translated (0x83 → 0x41,
//!   set 1/2/3 → 0x43/0x41/0x3F); there is no host key-event path yet.
//! * **Reset line.** The machine polls [`I8042::take_reset_request`]; the stored output port keeps
//!   bit 0 = 1 (the reset is a pulse, the machine performs it).
//! * **8-bit device on a wider access:** a 2- or 4-byte access acts on the port of its first byte;
//!   extra read bytes are 0xFF, extra written bytes are ignored. Ports other than 0x60 and 0x64
//!   read 0xFF and ignore writes.

use std::collections::VecDeque;

use crate::{Device, Nanos};

/// Data port (output buffer on read, input buffer "data" on write). `offset` is the absolute port.
pub const PORT_DATA: u64 = 0x60;
/// Status register on read, command register on write. `offset` is the absolute port.
pub const PORT_STATUS_COMMAND: u64 = 0x64;
/// ISA IRQ of the keyboard interface (output buffer full with keyboard data).
pub const KEYBOARD_IRQ: u8 = 1;
/// ISA IRQ of the aux (mouse) interface (output buffer full with aux data).
pub const AUX_IRQ: u8 = 12;
/// Delay, in ns of virtual time, between the guest reading port 0x60 and the next waiting byte
/// entering the output buffer when that byte raises an interrupt (see the module docs).
pub const REFILL_DELAY_NS: Nanos = 10_000;
/// Command byte at power-on (see the module docs): KBD_INT | AUX_INT | SYS | XLATE.
pub const POWER_ON_COMMAND_BYTE: u8 = 0x47;

// Status register bits (IBM PC AT Technical Reference, "Status Register").
const STATUS_OBF: u8 = 0x01;
#[cfg_attr(not(test), allow(dead_code))]
const STATUS_IBF: u8 = 0x02;
const STATUS_SYS: u8 = 0x04;
const STATUS_A2: u8 = 0x08;
const STATUS_INH: u8 = 0x10; // 1 = keyboard not inhibited (keylock)
const STATUS_AUXB: u8 = 0x20;

// Command byte bits.
const CMD_KBD_INT: u8 = 0x01;
const CMD_AUX_INT: u8 = 0x02;
const CMD_SYS: u8 = 0x04;
const CMD_KBD_DISABLE: u8 = 0x10;
const CMD_AUX_DISABLE: u8 = 0x20;
const CMD_XLATE: u8 = 0x40;

// Output port bits.
const OUT_RESET: u8 = 0x01; // 0 = reset asserted
const OUT_A20: u8 = 0x02;
const OUT_KBD_OBF: u8 = 0x10;
const OUT_AUX_OBF: u8 = 0x20;
/// Output port at power-on: reset deasserted, A20 on, keyboard clock/data lines high.
const OUT_POWER_ON: u8 = 0xCF;

const ACK: u8 = 0xFA;
const RESEND: u8 = 0xFE;
const BAT_OK: u8 = 0xAA;

/// Which interface a byte in the output buffer belongs to (selects AUXB and IRQ 1 vs 12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Keyboard,
    Aux,
}

/// A controller command waiting for its data byte on port 0x60.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PendingData {
    Ram(u8),
    OutputPort,
    KbdOutputBuffer,
    AuxOutputBuffer,
    AuxDevice,
}

/// PS/2 keyboard state (IBM PS/2 Hardware Interface Technical Reference, "Keyboard").
#[derive(Debug, Clone)]
struct Keyboard {
    queue: VecDeque<u8>,
    scanning: bool,
    scan_set: u8,
    leds: u8,
    typematic: u8,
    awaiting: Option<u8>,
    last_sent: u8,
}

impl Keyboard {
    fn new() -> Self {
        Keyboard {
            queue: VecDeque::new(),
            scanning: true,
            scan_set: 2,
            leds: 0,
            typematic: 0x2B,
            awaiting: None,
            last_sent: BAT_OK,
        }
    }

    fn defaults(&mut self) {
        self.scan_set = 2;
        self.typematic = 0x2B;
    }

    fn send(&mut self, b: u8) {
        self.last_sent = b;
        self.queue.push_back(b);
    }

    /// A byte from the host (controller) to the keyboard.
    fn write(&mut self, b: u8) {
        if let Some(cmd) = self.awaiting.take() {
            match cmd {
                0xED => {
                    self.leds = b & 0x07;
                    self.send(ACK);
                }
                0xF3 => {
                    self.typematic = b & 0x7F;
                    self.send(ACK);
                }
                0xF0 => match b {
                    0 => {
                        self.send(ACK);
                        let set = self.scan_set;
                        self.send(set);
                    }
                    1..=3 => {
                        self.scan_set = b;
                        self.send(ACK);
                    }
                    _ => self.send(RESEND),
                },
                _ => {}
            }
            return;
        }
        match b {
            0xED | 0xF3 | 0xF0 => {
                self.awaiting = Some(b);
                self.send(ACK);
            }
            0xEE => self.send(0xEE),
            0xF2 => {
                self.send(ACK);
                self.send(0xAB);
                self.send(0x83);
            }
            0xF4 => {
                self.scanning = true;
                self.send(ACK);
            }
            0xF5 => {
                self.defaults();
                self.scanning = false;
                self.send(ACK);
            }
            0xF6 => {
                self.defaults();
                self.send(ACK);
            }
            // Scan-set-3 key-type commands: accepted, no effect.
            0xF7..=0xFD => self.send(ACK),
            0xFE => {
                let b = self.last_sent;
                self.queue.push_back(b);
            }
            0xFF => {
                self.queue.clear();
                self.defaults();
                self.leds = 0;
                self.scanning = true;
                self.send(ACK);
                self.send(BAT_OK);
            }
            _ => self.send(RESEND),
        }
    }
}

/// PS/2 mouse state (IBM PS/2 Hardware Interface Technical Reference, "Pointing Device").
#[derive(Debug, Clone)]
struct Mouse {
    queue: VecDeque<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2_1: bool,
    resolution: u8,
    sample_rate: u8,
    awaiting: Option<u8>,
    last_sent: u8,
}

impl Mouse {
    fn new() -> Self {
        Mouse {
            queue: VecDeque::new(),
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2_1: false,
            resolution: 2,
            sample_rate: 100,
            awaiting: None,
            last_sent: BAT_OK,
        }
    }

    fn defaults(&mut self) {
        self.reporting = false;
        self.remote = false;
        self.scaling_2_1 = false;
        self.resolution = 2;
        self.sample_rate = 100;
    }

    fn send(&mut self, b: u8) {
        self.last_sent = b;
        self.queue.push_back(b);
    }

    /// A byte from the host (controller command 0xD4) to the mouse.
    fn write(&mut self, b: u8) {
        if self.wrap && b != 0xEC && b != 0xFF {
            self.send(b);
            return;
        }
        if let Some(cmd) = self.awaiting.take() {
            match cmd {
                0xF3 => self.sample_rate = b,
                0xE8 => self.resolution = b & 0x03,
                _ => {}
            }
            self.send(ACK);
            return;
        }
        match b {
            0xE6 => {
                self.scaling_2_1 = false;
                self.send(ACK);
            }
            0xE7 => {
                self.scaling_2_1 = true;
                self.send(ACK);
            }
            0xE8 | 0xF3 => {
                self.awaiting = Some(b);
                self.send(ACK);
            }
            0xE9 => {
                self.send(ACK);
                let mut s = 0;
                if self.remote {
                    s |= 0x40;
                }
                if self.reporting {
                    s |= 0x20;
                }
                if self.scaling_2_1 {
                    s |= 0x10;
                }
                self.send(s);
                let (r, rate) = (self.resolution, self.sample_rate);
                self.send(r);
                self.send(rate);
            }
            0xEA => {
                self.remote = false;
                self.send(ACK);
            }
            0xEB => {
                // Read data: one empty movement packet (bit 3 of byte 1 is always 1).
                self.send(ACK);
                self.send(0x08);
                self.send(0);
                self.send(0);
            }
            0xEC => {
                self.wrap = false;
                self.send(ACK);
            }
            0xEE => {
                self.wrap = true;
                self.send(ACK);
            }
            0xF0 => {
                self.remote = true;
                self.send(ACK);
            }
            0xF2 => {
                self.send(ACK);
                self.send(0x00);
            }
            0xF4 => {
                self.reporting = true;
                self.send(ACK);
            }
            0xF5 => {
                self.reporting = false;
                self.send(ACK);
            }
            0xF6 => {
                self.defaults();
                self.send(ACK);
            }
            0xFE => {
                let b = self.last_sent;
                self.queue.push_back(b);
            }
            0xFF => {
                self.queue.clear();
                self.defaults();
                self.wrap = false;
                self.send(ACK);
                self.send(BAT_OK);
                self.send(0x00);
            }
            _ => self.send(RESEND),
        }
    }
}

/// Scan-code translation applied by the controller to keyboard bytes when command byte bit 6
/// is set (IBM PC AT Technical Reference, command byte "PC compatibility mode"), restricted to the
/// bytes the keyboard model emits.
fn translate(b: u8) -> u8 {
    match b {
        0x01 => 0x43,
        0x02 => 0x41,
        0x03 => 0x3F,
        0x83 => 0x41,
        _ => b,
    }
}

/// The 8042 keyboard controller with its PS/2 keyboard and mouse.
///
/// Register at ports 0x60 and 0x64 with `offset` = absolute port. After every access and every
/// [`Device::tick`], the machine samples [`I8042::irq1_level`] (IRQ 1) and
/// [`I8042::irq12_level`] (IRQ 12), applies [`I8042::a20_enabled`] to its address masking, and
/// checks [`I8042::take_reset_request`].
#[derive(Debug, Clone)]
pub struct I8042 {
    /// Controller RAM; byte 0 is the command byte (IBM PC AT Technical Reference, 0x20–0x3F).
    ram: [u8; 32],
    sys_flag: bool,
    /// Last write went to port 0x64 (status bit 3, "A2").
    last_was_command: bool,
    output_port: u8,
    pending: Option<PendingData>,
    /// The one-byte output buffer.
    obuf: Option<(u8, Source)>,
    /// Value returned when port 0x60 is read while the output buffer is empty.
    last_data: u8,
    /// Controller replies and 0xD2/0xD3 bytes waiting for the output buffer.
    ctrl_queue: VecDeque<(u8, Source)>,
    kbd: Keyboard,
    aux: Mouse,
    /// Virtual time at which the output buffer is refilled after a data-port read.
    refill_at: Option<Nanos>,
    reset_request: bool,
}

impl Default for I8042 {
    fn default() -> Self {
        Self::new()
    }
}

impl I8042 {
    /// A controller in its power-on state (see the module docs): command byte
    /// [`POWER_ON_COMMAND_BYTE`], SYS flag set, A20 enabled, empty output buffer; keyboard
    /// scanning enabled in set 2, mouse in stream mode with reporting disabled.
    pub fn new() -> Self {
        let mut ram = [0u8; 32];
        ram[0] = POWER_ON_COMMAND_BYTE;
        I8042 {
            ram,
            sys_flag: POWER_ON_COMMAND_BYTE & CMD_SYS != 0,
            last_was_command: false,
            output_port: OUT_POWER_ON,
            pending: None,
            obuf: None,
            last_data: 0,
            ctrl_queue: VecDeque::new(),
            kbd: Keyboard::new(),
            aux: Mouse::new(),
            refill_at: None,
            reset_request: false,
        }
    }

    /// IRQ 1 level: the output buffer holds a keyboard-interface byte (keyboard data or a
    /// controller reply) and command byte bit 0 (keyboard interrupt enable) is set.
    pub fn irq1_level(&self) -> bool {
        matches!(self.obuf, Some((_, Source::Keyboard))) && self.command_byte() & CMD_KBD_INT != 0
    }

    /// IRQ 12 level: the output buffer holds an aux (mouse) byte and command byte bit 1 (aux
    /// interrupt enable) is set.
    pub fn irq12_level(&self) -> bool {
        matches!(self.obuf, Some((_, Source::Aux))) && self.command_byte() & CMD_AUX_INT != 0
    }

    /// Gate A20 (output port bit 1): `true` = address line 20 passes through, `false` = the
    /// machine must mask physical address bit 20. Enabled at power-on.
    pub fn a20_enabled(&self) -> bool {
        self.output_port & OUT_A20 != 0
    }

    /// Returns `true` once after the guest asserted the CPU reset line (output port bit 0
    /// written as 0 by 0xD1, or pulsed by 0xF0–0xFF with bit 0 clear, e.g. 0xFE).
    pub fn take_reset_request(&mut self) -> bool {
        std::mem::take(&mut self.reset_request)
    }

    /// The controller command byte (RAM byte 0).
    pub fn command_byte(&self) -> u8 {
        self.ram[0]
    }

    /// The status register as port 0x64 would read it (no side effects).
    pub fn status(&self) -> u8 {
        let mut s = STATUS_INH;
        match self.obuf {
            Some((_, Source::Keyboard)) => s |= STATUS_OBF,
            Some((_, Source::Aux)) => s |= STATUS_OBF | STATUS_AUXB,
            None => {}
        }
        if self.sys_flag {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_A2;
        }
        s
    }

    fn kbd_enabled(&self) -> bool {
        self.command_byte() & CMD_KBD_DISABLE == 0
    }

    fn aux_enabled(&self) -> bool {
        self.command_byte() & CMD_AUX_DISABLE == 0
    }

    /// The source of the next byte that would enter the output buffer, if any.
    fn next_source(&self) -> Option<Source> {
        if let Some(&(_, src)) = self.ctrl_queue.front() {
            Some(src)
        } else if self.kbd_enabled() && !self.kbd.queue.is_empty() {
            Some(Source::Keyboard)
        } else if self.aux_enabled() && !self.aux.queue.is_empty() {
            Some(Source::Aux)
        } else {
            None
        }
    }

    /// Moves the next waiting byte into the output buffer if it is empty and no refill delay
    /// is running.
    fn fill(&mut self) {
        if self.obuf.is_some() || self.refill_at.is_some() {
            return;
        }
        self.obuf = if let Some(entry) = self.ctrl_queue.pop_front() {
            Some(entry)
        } else if self.kbd_enabled() && !self.kbd.queue.is_empty() {
            self.kbd.queue.pop_front().map(|b| {
                let b = if self.command_byte() & CMD_XLATE != 0 {
                    translate(b)
                } else {
                    b
                };
                (b, Source::Keyboard)
            })
        } else if self.aux_enabled() {
            self.aux.queue.pop_front().map(|b| (b, Source::Aux))
        } else {
            None
        };
    }

    /// Applies an expired refill delay.
    fn advance(&mut self, now: Nanos) {
        if let Some(t) = self.refill_at {
            if now >= t {
                self.refill_at = None;
                self.fill();
            }
        }
    }

    fn reply(&mut self, b: u8) {
        self.ctrl_queue.push_back((b, Source::Keyboard));
        self.fill();
    }

    fn set_command_byte(&mut self, v: u8) {
        self.ram[0] = v;
        self.sys_flag = v & CMD_SYS != 0;
        self.fill();
    }

    /// Output port value as read by 0xD0: stored bits plus live OBF bits 4 (keyboard) and 5 (aux).
    fn read_output_port(&self) -> u8 {
        let mut v = self.output_port & !(OUT_KBD_OBF | OUT_AUX_OBF);
        match self.obuf {
            Some((_, Source::Keyboard)) => v |= OUT_KBD_OBF,
            Some((_, Source::Aux)) => v |= OUT_AUX_OBF,
            None => {}
        }
        v
    }

    fn write_output_port(&mut self, v: u8) {
        if v & OUT_RESET == 0 {
            self.reset_request = true;
        }
        self.output_port = (v | OUT_RESET) & !(OUT_KBD_OBF | OUT_AUX_OBF);
    }

    /// Controller command written to port 0x64 (IBM PC AT Technical Reference, "Commands (I/O
    /// Address Hex 64)"). Unknown commands are ignored.
    fn command(&mut self, cmd: u8) {
        self.pending = None;
        match cmd {
            0x20..=0x3F => {
                let v = self.ram[(cmd & 0x1F) as usize];
                self.reply(v);
            }
            0x60..=0x7F => self.pending = Some(PendingData::Ram(cmd & 0x1F)),
            0xA7 => {
                let v = self.command_byte() | CMD_AUX_DISABLE;
                self.set_command_byte(v);
            }
            0xA8 => {
                let v = self.command_byte() & !CMD_AUX_DISABLE;
                self.set_command_byte(v);
            }
            0xA9 | 0xAB => self.reply(0x00),
            0xAA => {
                self.sys_flag = true;
                self.reply(0x55);
            }
            0xAD => {
                let v = self.command_byte() | CMD_KBD_DISABLE;
                self.set_command_byte(v);
            }
            0xAE => {
                let v = self.command_byte() & !CMD_KBD_DISABLE;
                self.set_command_byte(v);
            }
            // Read input port: bit 7 = keyboard not inhibited.
            0xC0 => self.reply(0x80),
            0xD0 => {
                let v = self.read_output_port();
                self.reply(v);
            }
            0xD1 => self.pending = Some(PendingData::OutputPort),
            0xD2 => self.pending = Some(PendingData::KbdOutputBuffer),
            0xD3 => self.pending = Some(PendingData::AuxOutputBuffer),
            0xD4 => self.pending = Some(PendingData::AuxDevice),
            // Vendor extensions (e.g. HP Vectra / AMI): A20 off / on.
            0xDD => self.output_port &= !OUT_A20,
            0xDF => self.output_port |= OUT_A20,
            // Pulse output port bits 3:0 low where the mask bit is 0; bit 0 is the reset line.
            0xF0..=0xFF if cmd & 0x01 == 0 => self.reset_request = true,
            _ => {}
        }
    }

    /// Byte written to port 0x60: data for a pending controller command, else a keyboard command.
    fn data(&mut self, b: u8) {
        match self.pending.take() {
            Some(PendingData::Ram(0)) => self.set_command_byte(b),
            Some(PendingData::Ram(n)) => self.ram[n as usize] = b,
            Some(PendingData::OutputPort) => self.write_output_port(b),
            Some(PendingData::KbdOutputBuffer) => {
                self.ctrl_queue.push_back((b, Source::Keyboard));
                self.fill();
            }
            Some(PendingData::AuxOutputBuffer) => {
                self.ctrl_queue.push_back((b, Source::Aux));
                self.fill();
            }
            Some(PendingData::AuxDevice) => {
                self.aux.write(b);
                self.fill();
            }
            None => {
                // Writing to the keyboard enables the keyboard interface (as AT-compatible
                // controllers do to clock the byte out).
                self.ram[0] &= !CMD_KBD_DISABLE;
                self.kbd.write(b);
                self.fill();
            }
        }
    }

    fn read_data(&mut self, now: Nanos) -> u8 {
        if let Some((b, _)) = self.obuf.take() {
            self.last_data = b;
            match self.next_source() {
                Some(Source::Keyboard) if self.command_byte() & CMD_KBD_INT != 0 => {
                    self.refill_at = Some(now.saturating_add(REFILL_DELAY_NS));
                }
                Some(Source::Aux) if self.command_byte() & CMD_AUX_INT != 0 => {
                    self.refill_at = Some(now.saturating_add(REFILL_DELAY_NS));
                }
                _ => self.fill(),
            }
        }
        self.last_data
    }
}

impl Device for I8042 {
    /// Port read: 0x60 returns (and removes) the output-buffer byte, 0x64 the status register.
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        self.advance(now);
        data.fill(0xFF);
        let Some(first) = data.first_mut() else {
            return;
        };
        match offset {
            PORT_DATA => *first = self.read_data(now),
            PORT_STATUS_COMMAND => *first = self.status(),
            _ => {}
        }
    }

    /// Port write: 0x60 data (command data byte or keyboard command), 0x64 controller command.
    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        self.advance(now);
        let Some(&b) = data.first() else {
            return;
        };
        match offset {
            PORT_DATA => {
                self.last_was_command = false;
                self.data(b);
            }
            PORT_STATUS_COMMAND => {
                self.last_was_command = true;
                self.command(b);
            }
            _ => {}
        }
    }

    fn next_deadline(&self) -> Option<Nanos> {
        self.refill_at
    }

    fn tick(&mut self, now: Nanos) {
        self.advance(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(k: &mut I8042, now: Nanos, port: u64) -> u8 {
        let mut b = [0u8];
        k.read(now, port, &mut b);
        b[0]
    }

    fn cmd(k: &mut I8042, c: u8) {
        k.write(0, PORT_STATUS_COMMAND, &[c]);
    }

    fn data(k: &mut I8042, d: u8) {
        k.write(0, PORT_DATA, &[d]);
    }

    /// Reads every waiting byte by polling, advancing time past refill delays.
    fn drain(k: &mut I8042) -> Vec<(u8, bool)> {
        let mut out = Vec::new();
        let mut now = 1_000;
        for _ in 0..64 {
            if let Some(t) = k.next_deadline() {
                now = now.max(t);
                k.tick(now);
            }
            let st = rd(k, now, PORT_STATUS_COMMAND);
            if st & STATUS_OBF == 0 {
                if k.next_deadline().is_none() {
                    break;
                }
                continue;
            }
            out.push((rd(k, now, PORT_DATA), st & STATUS_AUXB != 0));
        }
        out
    }

    fn bytes(v: &[(u8, bool)]) -> Vec<u8> {
        v.iter().map(|x| x.0).collect()
    }

    #[test]
    fn power_on_state() {
        let mut k = I8042::new();
        assert!(k.a20_enabled());
        assert!(!k.take_reset_request());
        let st = rd(&mut k, 0, PORT_STATUS_COMMAND);
        assert_eq!(st & (STATUS_OBF | STATUS_IBF | STATUS_AUXB | 0xC0), 0);
        assert_eq!(st & STATUS_SYS, STATUS_SYS);
        assert!(!k.irq1_level() && !k.irq12_level());
        assert_eq!(k.next_deadline(), None);
    }

    #[test]
    fn self_test_and_interface_tests() {
        let mut k = I8042::new();
        cmd(&mut k, 0xAA);
        let st = rd(&mut k, 0, PORT_STATUS_COMMAND);
        assert_eq!(
            st & (STATUS_OBF | STATUS_A2 | STATUS_SYS),
            STATUS_OBF | STATUS_A2 | STATUS_SYS
        );
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x55);
        assert_eq!(rd(&mut k, 0, PORT_STATUS_COMMAND) & STATUS_OBF, 0);
        cmd(&mut k, 0xAB);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x00);
        cmd(&mut k, 0xA9);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x00);
    }

    #[test]
    fn command_byte_read_write_and_enables() {
        let mut k = I8042::new();
        cmd(&mut k, 0x20);
        assert_eq!(rd(&mut k, 0, PORT_DATA), POWER_ON_COMMAND_BYTE);
        cmd(&mut k, 0x60);
        data(&mut k, 0x30); // both interfaces disabled, no ints, SYS clear
        assert_eq!(k.command_byte(), 0x30);
        assert_eq!(rd(&mut k, 0, PORT_STATUS_COMMAND) & STATUS_SYS, 0);
        assert_eq!(
            rd(&mut k, 0, PORT_STATUS_COMMAND) & STATUS_A2,
            0,
            "A2 = last write to 0x60"
        );
        cmd(&mut k, 0xAE);
        cmd(&mut k, 0xA8);
        cmd(&mut k, 0x20);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x00);
        cmd(&mut k, 0xAD);
        cmd(&mut k, 0xA7);
        cmd(&mut k, 0x20);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x30);
        // Other controller RAM bytes.
        cmd(&mut k, 0x65);
        data(&mut k, 0x99);
        cmd(&mut k, 0x25);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x99);
    }

    #[test]
    fn a20_via_output_port_and_extensions() {
        let mut k = I8042::new();
        cmd(&mut k, 0xD1);
        data(&mut k, 0xDD); // A20 off, reset deasserted
        assert!(!k.a20_enabled());
        assert!(!k.take_reset_request());
        cmd(&mut k, 0xD0);
        assert_eq!(rd(&mut k, 0, PORT_DATA) & 0x03, 0x01);
        cmd(&mut k, 0xD1);
        data(&mut k, 0xDF);
        assert!(k.a20_enabled());
        cmd(&mut k, 0xD0);
        // OBF bits 4/5 reflect the output buffer when the command ran (empty).
        assert_eq!(rd(&mut k, 0, PORT_DATA) & 0x33, 0x03);
        cmd(&mut k, 0xDD);
        assert!(!k.a20_enabled());
        cmd(&mut k, 0xDF);
        assert!(k.a20_enabled());
    }

    #[test]
    fn reset_requests() {
        let mut k = I8042::new();
        cmd(&mut k, 0xFE);
        assert!(k.take_reset_request());
        assert!(!k.take_reset_request());
        cmd(&mut k, 0xFF); // no bits pulsed
        assert!(!k.take_reset_request());
        cmd(&mut k, 0xF0); // pulses all four, incl. reset
        assert!(k.take_reset_request());
        cmd(&mut k, 0xD1);
        data(&mut k, 0x02); // bit 0 clear: reset
        assert!(k.take_reset_request());
        assert!(k.a20_enabled());
    }

    #[test]
    fn keyboard_reset_reply_and_irq_edges() {
        let mut k = I8042::new();
        // Interrupt-driven: FA arrives at once, AA after the refill delay.
        data(&mut k, 0xFF);
        assert!(k.irq1_level());
        assert!(!k.irq12_level());
        assert_eq!(rd(&mut k, 100, PORT_DATA), 0xFA);
        assert!(!k.irq1_level(), "line drops between bytes");
        assert_eq!(rd(&mut k, 100, PORT_STATUS_COMMAND) & STATUS_OBF, 0);
        assert_eq!(k.next_deadline(), Some(100 + REFILL_DELAY_NS));
        k.tick(100 + REFILL_DELAY_NS);
        assert!(k.irq1_level());
        assert_eq!(rd(&mut k, 100 + REFILL_DELAY_NS, PORT_DATA), 0xAA);
        assert!(!k.irq1_level());
        assert_eq!(k.next_deadline(), None);
        // Polling with the interrupt disabled: immediate refill.
        cmd(&mut k, 0x60);
        data(&mut k, 0x44);
        data(&mut k, 0xFF);
        assert!(!k.irq1_level());
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0xFA);
        assert_eq!(rd(&mut k, 0, PORT_STATUS_COMMAND) & STATUS_OBF, STATUS_OBF);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0xAA);
    }

    #[test]
    fn keyboard_commands() {
        let mut k = I8042::new();
        // Translation on (power-on): ID 0xAB 0x83 is translated to 0xAB 0x41.
        data(&mut k, 0xF2);
        assert_eq!(bytes(&drain(&mut k)), [0xFA, 0xAB, 0x41]);
        cmd(&mut k, 0x60);
        data(&mut k, 0x07); // no translation
        data(&mut k, 0xF2);
        assert_eq!(bytes(&drain(&mut k)), [0xFA, 0xAB, 0x83]);
        data(&mut k, 0xED);
        data(&mut k, 0x07);
        data(&mut k, 0xF3);
        data(&mut k, 0x20);
        data(&mut k, 0xF4);
        data(&mut k, 0xF5);
        data(&mut k, 0xF6);
        data(&mut k, 0xEE);
        data(&mut k, 0x42); // unknown
        assert_eq!(
            bytes(&drain(&mut k)),
            [0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xFA, 0xEE, 0xFE]
        );
        data(&mut k, 0xF0);
        data(&mut k, 0x01);
        data(&mut k, 0xF0);
        data(&mut k, 0x00);
        assert_eq!(bytes(&drain(&mut k)), [0xFA, 0xFA, 0xFA, 0xFA, 0x01]);
        // Resend.
        data(&mut k, 0xFE);
        assert_eq!(bytes(&drain(&mut k)), [0x01]);
    }

    #[test]
    fn keyboard_disabled_holds_bytes() {
        let mut k = I8042::new();
        data(&mut k, 0xFF); // FA enters the output buffer, AA waits in the keyboard
        cmd(&mut k, 0xAD);
        cmd(&mut k, 0x20);
        // The ACK was already in the output buffer; the controller reply comes next and the
        // keyboard's AA is held while the interface is disabled.
        assert_eq!(bytes(&drain(&mut k)), [0xFA, 0x57]);
        assert_eq!(rd(&mut k, 1_000_000, PORT_STATUS_COMMAND) & STATUS_OBF, 0);
        cmd(&mut k, 0xAE);
        assert!(k.irq1_level());
        assert_eq!(rd(&mut k, 1_000_000, PORT_DATA), 0xAA);
    }

    #[test]
    fn aux_mouse_commands() {
        let mut k = I8042::new();
        cmd(&mut k, 0xD4);
        data(&mut k, 0xFF);
        let got = drain(&mut k);
        assert_eq!(bytes(&got), [0xFA, 0xAA, 0x00]);
        assert!(got.iter().all(|&(_, aux)| aux), "AUXB set for mouse bytes");
        cmd(&mut k, 0xD4);
        data(&mut k, 0xF2);
        assert_eq!(bytes(&drain(&mut k)), [0xFA, 0x00]);
        for (c, d) in [
            (0xF3u8, Some(40u8)),
            (0xE8, Some(3)),
            (0xE7, None),
            (0xF4, None),
        ] {
            cmd(&mut k, 0xD4);
            data(&mut k, c);
            if let Some(d) = d {
                cmd(&mut k, 0xD4);
                data(&mut k, d);
            }
        }
        assert_eq!(bytes(&drain(&mut k)), [0xFA; 6]);
        cmd(&mut k, 0xD4);
        data(&mut k, 0xE9);
        assert_eq!(bytes(&drain(&mut k)), [0xFA, 0x30, 3, 40]);
        for c in [0xF5u8, 0xF6, 0xE6] {
            cmd(&mut k, 0xD4);
            data(&mut k, c);
        }
        cmd(&mut k, 0xD4);
        data(&mut k, 0xE9);
        assert_eq!(
            bytes(&drain(&mut k)),
            [0xFA, 0xFA, 0xFA, 0xFA, 0x00, 2, 100]
        );
    }

    #[test]
    fn aux_irq12_and_loopback() {
        let mut k = I8042::new();
        // Linux i8042_check_aux: D3 loopback must come back as aux data.
        cmd(&mut k, 0xD3);
        data(&mut k, 0x5A);
        assert!(k.irq12_level());
        assert!(!k.irq1_level());
        let st = rd(&mut k, 0, PORT_STATUS_COMMAND);
        assert_eq!(st & (STATUS_OBF | STATUS_AUXB), STATUS_OBF | STATUS_AUXB);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x5A);
        assert!(!k.irq12_level());
        // D2 appears as keyboard data.
        cmd(&mut k, 0xD2);
        data(&mut k, 0x1C);
        assert!(k.irq1_level());
        assert_eq!(rd(&mut k, 0, PORT_STATUS_COMMAND) & STATUS_AUXB, 0);
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x1C);
        // Aux interrupt disabled in the command byte: no IRQ 12.
        cmd(&mut k, 0x60);
        data(&mut k, 0x45);
        cmd(&mut k, 0xD3);
        data(&mut k, 0x11);
        assert!(!k.irq12_level());
        assert_eq!(rd(&mut k, 0, PORT_DATA), 0x11);
    }

    #[test]
    fn odd_accesses_never_panic() {
        let mut k = I8042::new();
        let mut buf = [0u8; 4];
        k.read(0, 0x61, &mut buf);
        assert_eq!(buf, [0xFF; 4]);
        k.read(0, PORT_STATUS_COMMAND, &mut buf);
        assert_eq!(&buf[1..], &[0xFF; 3]);
        k.write(0, 0x62, &[1, 2]);
        k.write(0, PORT_DATA, &[]);
        k.read(0, PORT_DATA, &mut []);
        for c in 0..=255u8 {
            if c & 0xF0 == 0xF0 || c == 0xD1 {
                continue;
            }
            cmd(&mut k, c);
            data(&mut k, c);
        }
        drain(&mut k);
        // Reading an empty buffer returns the last byte again.
        let last = rd(&mut k, u64::MAX - 1, PORT_DATA);
        assert_eq!(rd(&mut k, u64::MAX, PORT_DATA), last);
    }
}
