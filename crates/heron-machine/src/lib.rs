//! The Heron PC: guest RAM, the CPU, the board's devices, the virtual clock, the boot paths and
//! the run loop. The CLI builds a [`Machine`] from a [`MachineConfig`] and calls
//! [`Machine::run`].

#![warn(missing_docs)]

pub mod acpi;
pub mod board;
pub mod device_spec;
pub mod firmware;
pub mod linux;
pub mod multiboot;

use std::io::Write;
use std::time::{Duration, Instant};

use heron_cpu::state::{cr, rf, seg, sreg, Segment, TableReg};
use heron_cpu::{Cpu, ExitReason};
use heron_softmmu::{GuestRam, RamError};

use board::{insns_to_ns, ns_to_insns, Board};
use heron_devices::ide::{IdeChannel, IdeDrive, IdeMedia};

/// Smallest RAM size accepted, in bytes.
pub const MIN_RAM: u64 = 16 << 20;
/// Largest RAM size accepted, in bytes (RAM sits below the 3 GiB PCI hole for now).
pub const MAX_RAM: u64 = 3 << 30;
/// Guest-physical address of the ACPI tables (inside the e820-reserved BIOS area).
pub const ACPI_TABLES: u64 = 0xE0000;

/// Errors building or running a machine.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    /// The RAM size is impossible.
    #[error("memory size {0} bytes is not supported: use {min} MiB to {max} MiB, a multiple of 4 KiB", min = MIN_RAM >> 20, max = MAX_RAM >> 20)]
    BadMemorySize(u64),
    /// Guest RAM could not be set up.
    #[error(transparent)]
    Ram(#[from] RamError),
    /// The kernel could not be loaded.
    #[error(transparent)]
    Linux(#[from] linux::LinuxBootError),
    /// ACPI tables could not be built.
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    /// A defect in Heron itself (a panic inside the CPU or a device model), with the CPU
    /// state at that point.
    #[error("internal emulator error: {0}")]
    Internal(String),
    /// The Multiboot kernel could not be loaded.
    #[error(transparent)]
    Multiboot(multiboot::MultibootError),
    /// A drive could not be opened or placed.
    #[error("drive: {0}")]
    Drive(String),
    /// The network backend could not be set up.
    #[error("network: {0}")]
    Net(String),
    /// The tier-1 translator could not start (an unsupported host, or no executable memory).
    #[error("JIT: {0} (try --engine interp)")]
    Jit(String),
    /// The BIOS image has an impossible size.
    #[error("BIOS image is {0} bytes: it must be 64 KiB to 16 MiB, a multiple of 64 KiB")]
    BadBios(usize),
    /// Writing the serial console failed.
    #[error("console output failed: {0}")]
    Console(#[from] std::io::Error),
}

/// How the machine starts.
pub enum Firmware {
    /// Direct Linux boot (no BIOS): load a bzImage and enter its 64-bit entry point.
    Linux {
        /// The bzImage kernel.
        kernel: Vec<u8>,
        /// Initial ramdisk, if any.
        initrd: Option<Vec<u8>>,
        /// Kernel command line.
        cmdline: String,
    },
    /// Multiboot (v1) kernel: loaded per its header, entered in 32-bit protected mode with
    /// EAX = 0x2BADB002 and EBX = the boot information (Multiboot Specification 0.6.96 §3.2).
    Multiboot {
        /// The kernel image (ELF32 or a.out kludge).
        kernel: Vec<u8>,
        /// Modules: contents and their command line (file name and arguments).
        modules: Vec<(Vec<u8>, String)>,
        /// Kernel command line.
        cmdline: String,
    },
    /// A BIOS image (e.g. SeaBIOS) mapped just below 4 GiB, its last 128 KiB also at
    /// 0xE0000; the CPU starts at the reset vector.
    Bios {
        /// The ROM image: 64 KiB to 16 MiB, a multiple of 64 KiB.
        rom: Vec<u8>,
    },
}

pub use firmware::BootOrder;

/// An opened drive on the IDE bus.
pub struct Drive {
    /// IDE position 0–3: primary master, primary slave, secondary master, secondary slave.
    pub index: u32,
    /// Disk or CD-ROM.
    pub media: heron_block::Media,
    /// The image.
    pub backend: Box<dyn heron_block::BlockBackend>,
}

/// Open the drives of `specs`, giving drives without `index=` the first free IDE position.
pub fn open_drives(specs: &[heron_block::DriveSpec]) -> Result<Vec<Drive>, MachineError> {
    let mut used = [false; 4];
    for s in specs {
        if let Some(i) = s.index {
            if used[i as usize] {
                return Err(MachineError::Drive(format!("two drives at IDE index {i}")));
            }
            used[i as usize] = true;
        }
    }
    let mut drives = Vec::new();
    for s in specs {
        let index = match s.index {
            Some(i) => i,
            None => {
                let free = used.iter().position(|u| !u).ok_or_else(|| MachineError::Drive("more than 4 IDE drives".into()))?;
                used[free] = true;
                free as u32
            }
        };
        let backend = heron_block::open_drive(s).map_err(|e| MachineError::Drive(format!("{}: {e}", s.file.display())))?;
        drives.push(Drive { index, media: s.media, backend });
    }
    Ok(drives)
}

/// What to build.
pub struct MachineConfig {
    /// Guest RAM in bytes.
    pub memory: u64,
    /// How it boots.
    pub firmware: Firmware,
    /// Disk and CD-ROM images (at most 4, on the PIIX3 IDE controller).
    pub drives: Vec<heron_block::DriveSpec>,
    /// BIOS boot order.
    pub boot_order: BootOrder,
    /// Network card: an e1000 with this backend, or none.
    pub nic: heron_net::NicSpec,
    /// Extra ISA devices (`--device`): isa-debug-exit, isa-debugcon.
    pub devices: Vec<device_spec::DeviceSpec>,
    /// Exit instead of rebooting when the guest resets or triple-faults (QEMU `-no-reboot`).
    pub no_reboot: bool,
    /// Host time (Unix seconds) the RTC starts from.
    pub rtc_start: i64,
    /// Which CPU engine runs guest code.
    pub engine: Engine,
}

/// The CPU engine (DESIGN.md §2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    /// Tier 0 alone: the interpreter (`--engine interp`).
    Interp,
    /// Tier 0 plus tier 1: hot blocks translated by Cranelift (the default).
    #[default]
    Jit,
    /// Tier 1 checked against tier 0 block by block (`--check-jit`, see
    /// [`heron_cpu::Cpu::enable_lockstep`]); the run stops at the first divergence.
    Lockstep,
}

/// Bounds on a run.
#[derive(Clone, Debug, Default)]
pub struct RunLimits {
    /// Stop after this many guest instructions.
    pub max_insns: Option<u64>,
    /// Stop after this much host wall-clock time.
    pub timeout: Option<Duration>,
    /// Stop as soon as this becomes true (set by a SIGINT/SIGTERM handler).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest powered off (ACPI S5).
    PowerOff,
    /// HLT with interrupts disabled: the guest stopped for good.
    Halted,
    /// The guest reset the machine and `no_reboot` was set.
    Reset,
    /// Triple fault with `no_reboot` set.
    TripleFault(String),
    /// `Engine::Lockstep`: tier 1 and tier 0 disagreed; the report.
    Divergence(String),
    /// `--timeout` expired.
    Timeout,
    /// `--max-insns` reached.
    InstructionLimit,
    /// The user quit: the console escape sequence, or `kill` in an attached GDB.
    UserQuit,
    /// [`RunLimits::stop`] was set (a signal).
    Stopped,
    /// The guest wrote to isa-debug-exit: Heron exits with this status ((V << 1) | 1).
    DebugExit(u32),
    /// The guest halted with interrupts enabled and nothing will ever wake it.
    Hung,
    /// A debugger breakpoint, watchpoint or single-step stopped the CPU (see
    /// [`heron_cpu::Cpu::set_breakpoint`]); the run can go on.
    Debug(heron_cpu::debug::DebugStop),
}

impl RunOutcome {
    /// The `heron` command's exit status for this outcome: 0 for a normal end (power-off,
    /// halt, reset with `no_reboot`, quit, a debugger stop), 2 triple fault, 3 timeout or
    /// instruction limit, 4 hung, 5 JIT divergence, 130 stopped by a signal (the command
    /// reports the actual signal), and isa-debug-exit's `(V << 1) | 1` truncated to 8 bits as
    /// the OS does.
    pub fn exit_status(&self) -> u8 {
        match self {
            RunOutcome::PowerOff | RunOutcome::Halted | RunOutcome::Reset | RunOutcome::UserQuit | RunOutcome::Debug(_) => 0,
            RunOutcome::TripleFault(_) => 2,
            RunOutcome::Timeout | RunOutcome::InstructionLimit => 3,
            RunOutcome::Hung => 4,
            RunOutcome::Divergence(_) => 5,
            RunOutcome::Stopped => 130,
            RunOutcome::DebugExit(status) => (status & 0xFF) as u8,
        }
    }
}

/// I/O base of the IDE bus master registers when no BIOS assigns one (as SeaBIOS does on
/// QEMU's pc machine).
pub const DIRECT_BOOT_BMIBA: u16 = 0xC040;

/// BAR0 of the e1000 when no BIOS assigns one.
pub const DIRECT_BOOT_NIC_MMIO: u32 = 0xFEBC_0000;
/// BAR1 (I/O) of the e1000 when no BIOS assigns one.
pub const DIRECT_BOOT_NIC_IO: u16 = 0xC000;
/// IRQ the e1000's INTA# is routed to when no BIOS does it (PIIX3 PIRQC).
pub const DIRECT_BOOT_NIC_IRQ: u8 = 11;

/// IDE channel and drive of IDE index 0–3 (primary master, primary slave, secondary master,
/// secondary slave).
fn ide_position(idx: usize) -> (IdeChannel, IdeDrive) {
    let ch = if idx < 2 { IdeChannel::Primary } else { IdeChannel::Secondary };
    let dr = if idx % 2 == 0 { IdeDrive::Master } else { IdeDrive::Slave };
    (ch, dr)
}

/// The ROM image of a BIOS firmware, shared with the board's MMIO decode.
fn bios_rom(f: &Firmware) -> Option<std::sync::Arc<[u8]>> {
    match f {
        Firmware::Bios { rom } => Some(rom.as_slice().into()),
        Firmware::Linux { .. } | Firmware::Multiboot { .. } => None,
    }
}

/// Source of serial-console input (the host keyboard or a test script).
pub trait ConsoleInput {
    /// Bytes available now, without waiting.
    fn poll(&mut self) -> Vec<u8>;
    /// Wait up to `timeout` for input; returns what arrived. `None` means the input is closed
    /// (end of file) and will never produce more.
    fn wait(&mut self, timeout: Duration) -> Option<Vec<u8>>;
    /// The user asked to quit (escape sequence seen).
    fn quit_requested(&self) -> bool {
        false
    }
    /// A person is typing (a terminal): while the guest idles, the machine waits for input in
    /// real time instead of jumping virtual time ahead at full host speed. Runs with
    /// non-interactive input stay deterministic.
    fn interactive(&self) -> bool {
        false
    }
}

/// No console input at all.
pub struct NoInput;
impl ConsoleInput for NoInput {
    fn poll(&mut self) -> Vec<u8> {
        Vec::new()
    }
    fn wait(&mut self, _: Duration) -> Option<Vec<u8>> {
        None
    }
}

/// A whole PC.
pub struct Machine {
    cfg: MachineConfig,
    ram: GuestRam,
    /// The CPU.
    pub cpu: Cpu,
    /// The devices.
    pub board: Board,
    pending_input: std::collections::VecDeque<u8>,
    /// The e1000, if configured; kept across resets (it holds the network backend).
    nic: Option<std::rc::Rc<std::cell::RefCell<heron_devices::e1000::E1000>>>,
    /// Drives waiting to be attached at the next boot (IDE index 0–3).
    pending_media: [Option<IdeMedia>; 4],
    /// Guest-physical ranges devices wrote by DMA since the CPU last ran.
    dma_written: std::rc::Rc<std::cell::RefCell<Vec<(u64, u64)>>>,
    /// Guest instructions retired at the last reset (statistics).
    pub resets: u32,
}

impl Machine {
    /// Build the machine and load the kernel (direct Linux boot).
    pub fn new(cfg: MachineConfig) -> Result<Self, MachineError> {
        if cfg.memory < MIN_RAM || cfg.memory > MAX_RAM || cfg.memory % 4096 != 0 {
            return Err(MachineError::BadMemorySize(cfg.memory));
        }
        // Check the boot image before allocating anything big.
        match &cfg.firmware {
            Firmware::Linux { kernel, .. } => {
                linux::SetupHeader::parse(kernel)?;
            }
            Firmware::Multiboot { kernel, .. } => {
                multiboot::MultibootHeader::find(kernel).map_err(MachineError::Multiboot)?;
            }
            Firmware::Bios { rom } => {
                if rom.len() < 0x10000 || rom.len() > 16 << 20 || rom.len() % 0x10000 != 0 {
                    return Err(MachineError::BadBios(rom.len()));
                }
            }
        }
        let ram = GuestRam::new(cfg.memory)?;
        let mut cpu = Cpu::new(ram.clone());
        if cfg.engine != Engine::Interp {
            let lockstep = cfg.engine == Engine::Lockstep;
            cpu.translator = Some(heron_jit::default_translator(lockstep).map_err(|e| MachineError::Jit(e.to_string()))?);
        }
        let dma_written: std::rc::Rc<std::cell::RefCell<Vec<(u64, u64)>>> = Default::default();
        let nic = match heron_net::open_nic(&cfg.nic).map_err(|e| MachineError::Net(e.to_string()))? {
            Some(backend) => {
                let mac = cfg.nic.mac().unwrap_or(heron_net::MacAddr::QEMU_DEFAULT).0;
                let dma = board::RamDma::new(ram.clone(), dma_written.clone());
                Some(std::rc::Rc::new(std::cell::RefCell::new(heron_devices::e1000::E1000::new(mac, backend, Box::new(dma)))))
            }
            None => None,
        };
        let board = Board::new(cfg.rtc_start, cfg.memory, bios_rom(&cfg.firmware), None);
        let mut pending_media: [Option<IdeMedia>; 4] = Default::default();
        for d in open_drives(&cfg.drives)? {
            pending_media[d.index as usize] = Some(match d.media {
                heron_block::Media::Disk => IdeMedia::HardDisk(d.backend),
                heron_block::Media::Cdrom => IdeMedia::CdRom(Some(d.backend)),
            });
        }
        let mut m = Machine { cfg, ram, cpu, board, pending_input: Default::default(), nic, pending_media, dma_written, resets: 0 };
        m.boot()?;
        Ok(m)
    }

    /// Guest RAM.
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Put RAM, CPU and devices in their power-on state and load the kernel: the state a
    /// boot loader leaves for the 64-bit boot protocol (Documentation/x86/boot.rst, "64-bit
    /// Boot Protocol").
    fn boot(&mut self) -> Result<(), MachineError> {
        if self.resets > 0 {
            // A reboot starts from clean RAM, as after power-on.
            self.ram.as_mut_slice().fill(0);
        }
        let icount = self.cpu.s.icount;
        let tracer = self.cpu.tracer.take();
        let translator = self.cpu.translator.take();
        self.cpu = Cpu::new(self.ram.clone());
        self.cpu.tracer = tracer;
        self.cpu.translator = translator;
        self.cpu.flush_code();
        if self.cfg.engine == Engine::Lockstep {
            self.cpu.enable_lockstep();
        } else {
            // Cranelift on the second core; the lockstep check compares each block at once.
            self.cpu.set_background_translation(true);
        }
        // Virtual time keeps running across resets so device timers stay monotonic.
        self.cpu.s.icount = icount;
        // Drives survive a reset: take them off the old board (or the pending list).
        for idx in 0..4 {
            let (ch, dr) = ide_position(idx);
            if let Some(m) = self.board.ide.detach(ch, dr) {
                self.pending_media[idx] = Some(m);
            }
        }
        if let Some(n) = &self.nic {
            n.borrow_mut().reset();
        }
        self.board = Board::new(self.cfg.rtc_start, self.cfg.memory, bios_rom(&self.cfg.firmware), self.nic.clone());
        self.board.add_isa_devices(&self.cfg.devices)?;
        let dma = board::RamDma::new(self.ram.clone(), self.dma_written.clone());
        self.board.ide.set_dma_memory(Box::new(dma));
        let mut chs: [Option<firmware::Chs>; 4] = [None; 4];
        for idx in 0..4 {
            if let Some(m) = self.pending_media[idx].take() {
                if let IdeMedia::HardDisk(b) = &m {
                    let g = heron_devices::ide::ChsGeometry::for_sectors(b.size() / 512);
                    chs[idx] = Some(firmware::Chs { cylinders: g.cylinders as u32, heads: g.heads as u32, sectors: g.sectors as u32 });
                }
                let (ch, dr) = ide_position(idx);
                self.board.ide.attach(ch, dr, m);
            }
        }
        let (kernel, initrd, cmdline) = match &self.cfg.firmware {
            Firmware::Linux { kernel, initrd, cmdline } => (kernel, initrd, cmdline),
            Firmware::Multiboot { kernel, modules, cmdline } => {
                let boot = multiboot::load_multiboot(&mut self.ram, kernel, cmdline, modules).map_err(MachineError::Multiboot)?;
                // ACPI tables where an OS scans for the RSDP (0xE0000-0xFFFFF), so S5 works.
                acpi::build_acpi_tables(&mut self.ram, ACPI_TABLES, board::ACPI_PM_BASE, board::ACPI_SCI_IRQ)?;
                let s = &mut *self.cpu.s;
                s.cr0 = cr::CR0_PE | cr::CR0_ET;
                s.gdtr = TableReg { base: boot.gdt_base, limit: boot.gdt_limit };
                s.idtr = TableReg { base: 0, limit: 0 };
                s.seg[sreg::CS] = Segment::from_descriptor(boot.code_selector, multiboot::GDT_CODE32);
                s.seg[sreg::CS].attr |= seg::ACCESSED;
                for r in [sreg::DS, sreg::ES, sreg::SS, sreg::FS, sreg::GS] {
                    s.seg[r] = Segment::from_descriptor(boot.data_selector, multiboot::GDT_DATA32);
                    s.seg[r].attr |= seg::ACCESSED;
                }
                s.tr = Segment { selector: 0, attr: seg::P | 0xB, limit: 0xFFFF, base: 0 };
                s.rflags = rf::FIXED;
                s.regs = [0; 16];
                s.regs[0] = boot.eax as u64;
                s.regs[3] = boot.info_addr as u64;
                s.rip = boot.entry as u64;
                self.cpu.flush_code();
                return Ok(());
            }
            Firmware::Bios { rom } => {
                let mut fw = firmware::SeabiosConfig::new(self.cfg.memory, self.cfg.boot_order, board::ACPI_PM_BASE, board::ACPI_SCI_IRQ);
                fw.ata_chs = chs;
                let dma = board::RamDma::new(self.ram.clone(), self.dma_written.clone());
                let mut fw_cfg = heron_devices::fw_cfg::FwCfg::new(Box::new(dma));
                fw.apply(&mut fw_cfg).map_err(|e| MachineError::Drive(e.to_string()))?;
                for (index, value) in fw.cmos_bytes() {
                    self.board.rtc.set_cmos(index, value);
                }
                self.board.fw_cfg = Some(fw_cfg);
                // The BIOS's last 128 KiB also appear at 0xE0000-0xFFFFF (the i440FX PAM
                // registers are stored but not acted on: that area stays RAM, preloaded
                // with the ROM, so shadowing it is a no-op). The CPU starts at the reset
                // vector F000:FFF0 with CS base 0xFFFF0000, inside the high ROM copy.
                let low = &rom[rom.len().saturating_sub(0x20000)..];
                self.ram.write_bytes(0x10_0000 - low.len() as u64, low)?;
                self.cpu.flush_code();
                return Ok(());
            }
        };
        // No BIOS: program the IDE function as firmware would, so Linux finds both channels.
        self.board.configure_ide_like_firmware(DIRECT_BOOT_BMIBA);
        self.board.configure_nic_like_firmware(DIRECT_BOOT_NIC_MMIO, DIRECT_BOOT_NIC_IO, DIRECT_BOOT_NIC_IRQ);
        let boot = linux::load_linux(&mut self.ram, kernel, initrd.as_deref(), cmdline)?;
        let rsdp = acpi::build_acpi_tables(&mut self.ram, ACPI_TABLES, board::ACPI_PM_BASE, board::ACPI_SCI_IRQ)?;
        linux::set_acpi_rsdp(&mut self.ram, boot.zero_page, rsdp);
        let s = &mut *self.cpu.s;
        s.cr0 = cr::CR0_PE | cr::CR0_MP | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG;
        s.cr4 = cr::CR4_PAE;
        s.cr3 = boot.cr3;
        s.efer = cr::EFER_LME | cr::EFER_LMA;
        s.gdtr = TableReg { base: boot.gdt_base, limit: boot.gdt_limit };
        s.idtr = TableReg { base: 0, limit: 0 };
        s.seg[sreg::CS] = Segment::from_descriptor(boot.code_selector, linux::GDT_CODE64);
        s.seg[sreg::CS].attr |= seg::ACCESSED;
        for r in [sreg::DS, sreg::ES, sreg::SS, sreg::FS, sreg::GS] {
            s.seg[r] = Segment::from_descriptor(boot.data_selector, linux::GDT_DATA);
            s.seg[r].attr |= seg::ACCESSED;
        }
        s.tr = Segment { selector: 0, attr: seg::P | 0xB, limit: 0xFFFF, base: 0 };
        s.rflags = rf::FIXED;
        s.regs = [0; 16];
        s.regs[6] = boot.zero_page; // RSI
        s.rip = boot.entry64;
        // Firmware leaves MTRRs enabled with write-back as the default type.
        s.msr.mtrr_def_type = 0xC06;
        s.msr.mtrr_fix = [0x0606_0606_0606_0606; 11];
        self.cpu.flush_code();
        Ok(())
    }

    /// Run the guest until it stops or a limit is hit. Serial output goes to `out`; `input`
    /// feeds the serial port.
    pub fn run(&mut self, out: &mut dyn Write, input: &mut dyn ConsoleInput, limits: RunLimits) -> Result<RunOutcome, MachineError> {
        let start = Instant::now();
        let mut last_flush = Instant::now();
        let insn_limit = limits.max_insns.map(|n| self.cpu.s.icount.saturating_add(n));
        // Poll the host (input, wall clock) at least this often in guest instructions.
        const SLICE: u64 = 2_000_000;
        let outcome = loop {
            let now = insns_to_ns(self.cpu.s.icount);
            self.board.tick(now);
            self.board.poll_nic(now);
            self.feed_input(input);
            if input.quit_requested() {
                break RunOutcome::UserQuit;
            }
            if limits.stop.as_ref().is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed)) {
                break RunOutcome::Stopped;
            }
            if let Some(t) = limits.timeout {
                if start.elapsed() >= t {
                    break RunOutcome::Timeout;
                }
            }
            if let Some(l) = insn_limit {
                if self.cpu.s.icount >= l {
                    break RunOutcome::InstructionLimit;
                }
            }
            let mut until = self.cpu.s.icount + SLICE;
            if let Some(d) = self.board.next_deadline() {
                until = until.min(ns_to_insns(d).max(self.cpu.s.icount + 1));
            }
            if let Some(l) = insn_limit {
                until = until.min(l);
            }
            let exit = {
                let (cpu, board) = (&mut self.cpu, &mut self.board);
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cpu.run(board, until))) {
                    Ok(e) => e,
                    Err(p) => {
                        let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_default();
                        return Err(MachineError::Internal(format!("{what}\n{}", self.cpu.describe())));
                    }
                }
            };
            self.cpu.set_a20(self.board.a20_enabled());
            for (pa, len) in self.dma_written.borrow_mut().drain(..) {
                self.cpu.invalidate_code_range(pa, len);
            }
            self.drain_output(out)?;
            if last_flush.elapsed() > Duration::from_millis(20) {
                out.flush()?;
                last_flush = Instant::now();
            }
            if self.board.events.poweroff {
                break RunOutcome::PowerOff;
            }
            if let Some(status) = self.board.take_debug_exit() {
                break RunOutcome::DebugExit(status);
            }
            if self.board.events.reset {
                if self.cfg.no_reboot {
                    break RunOutcome::Reset;
                }
                self.resets += 1;
                self.boot()?;
                continue;
            }
            match exit {
                ExitReason::Budget | ExitReason::Io | ExitReason::ExitRequest => {}
                ExitReason::Divergence(report) => break RunOutcome::Divergence(report),
                ExitReason::Debug(stop) => break RunOutcome::Debug(stop),
                ExitReason::TripleFault(msg) => {
                    if self.cfg.no_reboot {
                        break RunOutcome::TripleFault(msg);
                    }
                    self.resets += 1;
                    self.boot()?;
                }
                ExitReason::Halted => {
                    if self.cpu.s.rflags & rf::IF == 0 {
                        break RunOutcome::Halted;
                    }
                    if self.board.pic.has_interrupt() {
                        continue;
                    }
                    // Jump the virtual clock to the next device deadline (DESIGN.md §8).
                    match self.board.next_deadline() {
                        Some(d) => {
                            let target = ns_to_insns(d);
                            // A person at the keyboard or a real network: idle time passes at
                            // host speed (host-synchronized idling), so keys and host sockets
                            // keep pace with the guest's timers. Otherwise time jumps.
                            if input.interactive() || self.nic.is_some() {
                                let gap = Duration::from_nanos(insns_to_ns(target.saturating_sub(self.cpu.s.icount)));
                                if gap > Duration::from_millis(1) {
                                    out.flush()?;
                                    let slice = gap.min(Duration::from_millis(if self.nic.is_some() { 1 } else { 50 }));
                                    let waited = Instant::now();
                                    if input.interactive() {
                                        if let Some(bytes) = input.wait(slice) {
                                            self.pending_input.extend(bytes);
                                        }
                                    } else {
                                        std::thread::sleep(slice);
                                    }
                                    let elapsed = waited.elapsed().min(gap);
                                    self.cpu.s.icount += ns_to_insns(elapsed.as_nanos() as u64);
                                    self.board.poll_nic(insns_to_ns(self.cpu.s.icount));
                                    continue;
                                }
                            }
                            let target = insn_limit.map_or(target, |l| target.min(l));
                            self.cpu.s.icount = self.cpu.s.icount.max(target);
                        }
                        None => {
                            // Nothing but console input can wake the guest.
                            out.flush()?;
                            let wait = limits.timeout.map_or(Duration::from_millis(100), |t| t.saturating_sub(start.elapsed()).min(Duration::from_millis(100)));
                            match input.wait(wait) {
                                Some(bytes) => self.pending_input.extend(bytes),
                                None => break RunOutcome::Hung,
                            }
                        }
                    }
                }
            }
        };
        self.drain_output(out)?;
        out.flush()?;
        if let Some(t) = self.cpu.tracer.as_mut() {
            t.flush();
        }
        Ok(outcome)
    }

    fn feed_input(&mut self, input: &mut dyn ConsoleInput) {
        self.pending_input.extend(input.poll());
        if self.pending_input.is_empty() {
            return;
        }
        let n = self.board.uart.rx_space().min(self.pending_input.len());
        if n > 0 {
            let bytes: Vec<u8> = self.pending_input.drain(..n).collect();
            let taken = self.board.uart.receive(&bytes);
            for b in bytes[taken..].iter().rev() {
                self.pending_input.push_front(*b);
            }
            self.board.update_irqs();
        }
    }

    fn drain_output(&mut self, out: &mut dyn Write) -> std::io::Result<()> {
        if self.board.uart.has_output() {
            let bytes = self.board.uart.take_output();
            out.write_all(&bytes)?;
        }
        self.board.drain_debugcons(out)
    }

    /// Make every write the guest saw complete durable on the host (fsync of each image).
    pub fn flush_drives(&mut self) -> Result<(), MachineError> {
        self.board.ide.flush_all().map_err(|e| MachineError::Drive(format!("flush failed: {e}")))
    }

    /// Execution statistics as text lines (`--stats`, GDB's `monitor stats`): guest
    /// instructions and their rate over `wall` (host time the run took), block and TLB
    /// counters, and the lockstep and tier-1 lines when those ran.
    pub fn stats_text(&self, wall: Duration) -> String {
        let st = &self.cpu.stats;
        let n = self.icount();
        let secs = wall.as_secs_f64().max(1e-9);
        let mut t = format!(
            "heron: {n} guest instructions in {:.2} s ({:.1} M/s), RIP {:#x}; blocks decoded {}, code-cache flushes {}, TLB misses {}, interrupts {}, exceptions {}, SMC invalidations {}\n",
            wall.as_secs_f64(),
            n as f64 / secs / 1e6,
            self.cpu.s.rip,
            st.blocks_decoded,
            st.cache_flushes,
            st.tlb_misses,
            st.interrupts,
            st.exceptions,
            st.smc_invalidations
        );
        if st.lockstep_checked + st.lockstep_unchecked > 0 {
            t += &format!("heron: lockstep: {} blocks checked against the interpreter, {} with I/O or self-modification left unchecked\n", st.lockstep_checked, st.lockstep_unchecked);
        }
        if let Some(tr) = self.cpu.translator.as_deref() {
            let ts = tr.stats();
            t += &format!(
                "heron: tier 1: {} translations ({} guest instructions, {:.1}% lifted, {} KiB code), {:.2} s compiling ({:.0} us each; {:.2} s on the background thread, {:.1}% of wall on the guest's), {} code-cache flushes; {:.1}% of guest instructions ran in tier 1, {} in tier 0 ({} translation runs, {} entered from another: {} by link, {} by lookup); {:.2} TLB misses per 1000 instructions\n",
                ts.translations,
                ts.translated_insns,
                100.0 * ts.lifted_insns as f64 / ts.translated_insns.max(1) as f64,
                ts.code_bytes / 1024,
                ts.compile_ns as f64 / 1e9,
                ts.compile_ns as f64 / 1e3 / ts.translations.max(1) as f64,
                ts.background_ns as f64 / 1e9,
                100.0 * (ts.compile_ns - ts.background_ns) as f64 / 1e9 / secs,
                ts.flushes,
                100.0 * st.tier1_insns as f64 / n.max(1) as f64,
                n - st.tier1_insns,
                st.tier1_runs,
                st.tier1_chained,
                st.tier1_chained - st.tier1_lookups,
                st.tier1_lookups,
                1000.0 * st.tlb_misses as f64 / n.max(1) as f64,
            );
        }
        t
    }

    /// Guest instructions retired (the virtual clock).
    ///
    /// (Kept next to [`Machine::icount`] for readers of statistics.)
    pub fn icount(&self) -> u64 {
        self.cpu.s.icount
    }
}
