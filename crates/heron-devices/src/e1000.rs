//! Intel 82540EM Gigabit Ethernet Controller ("e1000"), as a PCI function with a memory BAR for
//! its registers, an I/O BAR for indirect register access, a Microwire EEPROM, an internal
//! M88E1011-compatible PHY reached through MDIC, legacy receive descriptors, and legacy plus
//! TCP/IP extended transmit descriptors with checksum offload and TCP segmentation (TSO).
//!
//! References: Intel *PCI/PCI-X Family of Gigabit Ethernet Controllers Software Developer's
//! Manual* (8254x SDM, rev. 4.0), cited below as "SDM": §3.2 (receive descriptors and their
//! status/error fields), §3.3 (transmit descriptors: §3.3.3 legacy, §3.3.6 TCP/IP context,
//! §3.3.7 TCP/IP data), §3.4 (transmit descriptor ring), §3.5 (TCP segmentation, §3.5.9 the
//! header updates of each segment), §5 (EEPROM interface and address map), §13 (register
//! descriptions: CTRL, STATUS, EECD, EERD, MDIC, ICR (§13.4.17), ITR, ICS, IMS (§13.4.20), IMC,
//! RCTL, RDBAL…RDT, RDTR, RADV, RXDCTL, RXCSUM, TCTL, TIPG, TDBAL…TDT, RAL/RAH, MTA, VFTA,
//! IOADDR/IODATA, the statistics registers and the PHY registers), §14 (initialization and
//! reset). References below name the section or the register.
//!
//! # Wiring (what the machine does)
//!
//! * **PCI**: function 8086:100E revision 3, class 0x020000, header type 0, interrupt pin INTA#.
//!   Subsystem IDs are 1AF4:1100 (Red Hat / "QEMU virtual machine", [`QEMU_SUBSYSTEM_VENDOR`] /
//!   [`QEMU_SUBSYSTEM_ID`]) like every other function of Heron's platform and like QEMU's e1000
//!   PCI function; EEPROM words 0x0B/0x0C carry the same IDs. No capabilities, no expansion ROM.
//!   [`E1000`] implements [`PciFunction`]: its configuration space lives inside it. Because
//!   [`crate::pci::PciHost`] keeps functions as `Box<dyn PciFunction>`, a machine that also
//!   needs the device for MMIO keeps it in an `Rc<RefCell<E1000>>` and registers an
//!   [`E1000PciProxy`] on the bus (see there).
//! * **BAR0** ([`MMIO_BAR`]): 128 KiB ([`MMIO_SIZE`]) 32-bit non-prefetchable memory. Route guest
//!   accesses inside it to [`Device::read`] / [`Device::write`] with `offset` = address − BAR0
//!   (accesses of 1–8 bytes, any alignment; registers are 32 bits wide and a wider or unaligned
//!   access touches each dword it covers) when [`E1000Decode::mmio`] is `Some`.
//! * **BAR1** ([`IO_BAR`]): 64 bytes ([`IO_SIZE`]) of I/O space. Route port accesses to
//!   [`E1000::io_read`] / [`E1000::io_write`] with `offset` = port − BAR1 when
//!   [`E1000Decode::io`] is `Some`: offset 0 is IOADDR, offset 4 is IODATA (SDM §13, I/O-mapped
//!   internal register access); offsets 8–63 read all ones. Linux's e1000 issues the CTRL.RST
//!   software reset of an 82540 through this window, so it must be wired.
//! * **INTx**: [`E1000::irq_level`] is the level of INTA#; sample it after every access,
//!   [`Device::tick`] and [`E1000::poll_rx`], and route it like any INTA# on the board
//!   (`Piix3Isa::route_intx(device, 0)`). It honours the PCI Command Interrupt Disable bit.
//! * **Timers**: include [`Device::next_deadline`] (interrupt throttling, ITR) in the machine's
//!   deadline and call [`Device::tick`] when it passes.
//! * **Receive polling**: call [`E1000::poll_rx`] regularly from the run loop (e.g. each time the
//!   CPU returns to the machine). It calls [`NetBackend::poll`], pulls at most
//!   [`RX_FRAMES_PER_POLL`] frames from the backend and writes them into the guest's receive
//!   ring. `tick` does not receive. Transmission needs no polling: it happens during the guest's
//!   register write (TDT, TCTL) that hands descriptors to the device.
//! * **DMA**: the [`DmaMemory`] handle given to [`E1000::new`]. DMA happens only while the PCI
//!   Command Bus Master Enable bit is set (read from the function's own configuration space).
//!
//! # Modelling choices
//!
//! * The link is up (1000 Mb/s, full duplex) unless [`E1000::set_link_up`] says otherwise;
//!   STATUS.LU does not depend on CTRL.SLU (as on QEMU). Auto-negotiation completes instantly.
//!   A link change sets ICR.LSC.
//! * EEPROM: 64 words, read through EERD or by bit-banging the Microwire protocol on EECD
//!   (READ, WRITE, ERASE, EWEN, EWDS, WRAL, ERAL; DO reads 1 = ready outside a read). Linux's
//!   e1000 driver bit-bangs it on the 82540. EECD.EE_GNT follows EE_REQ; EE_PRES is 1; the
//!   EEPROM pins are honoured whether or not EE_REQ is set. Writes are kept for the life of the
//!   device (reset does not restore the image).
//! * Interrupts (SDM §13.4.17 ICR, ITR): ICR is read-to-clear and also write-1-to-clear;
//!   reading ICS returns ICR without clearing it. ITR (bits 15:0, 256 ns units) enforces a
//!   minimum interval between two assertions of INTA#: an assertion starts the window, and a
//!   cause that becomes pending (with the line low) inside the window asserts at its end
//!   ([`Device::next_deadline`]).
//!   RDTR/RADV and TIDV/TADV are stored but act as 0: RXT0, TXDW and TXQE are raised as soon as
//!   the descriptors are written back. IAM does not exist on the 82540EM (82571 and later):
//!   offset 0xE0 reads 0.
//! * Receive: frames shorter than 60 bytes are padded to 60; with RCTL.SECRC clear a correct
//!   4-byte FCS (CRC-32) is appended and counted in the descriptor length. Frames longer than
//!   1522 bytes including FCS are dropped (ROC) unless RCTL.LPE (limit 16384). A frame is
//!   written only when enough descriptors are free for all of it; otherwise it waits in an
//!   internal queue standing for the 82540EM's receive packet buffer ([`RX_QUEUE_FRAMES`] frames /
//!   [`RX_QUEUE_BYTES`] bytes); when that is full the frame is dropped, MPC is incremented and
//!   ICR.RXO is set; clearing RCTL.EN discards the queue. RNBC counts frames that found no free
//!   descriptor. Descriptors with buffer
//!   address 0 are skipped (written back with DD and length 0). RXDMT0 is raised whenever the
//!   free descriptors left are at most RDLEN/16 >> (RCTL.RDMTS + 1). RXCSUM.IPOFL/TUOFL check
//!   IPv4 header and TCP/UDP-over-IPv4 checksums (non-fragments); when both are off IXSM is set.
//!   The 16-bit packet checksum from RXCSUM.PCSS is always filled in. CTRL.VME strips an 802.1Q
//!   tag (VP + special field); RCTL.VFE filters tagged frames through VFTA.
//! * Transmit: IFCS is accepted and ignored (backends take frames without FCS). TCTL.PSP pads
//!   to 60 bytes. Legacy IC inserts a checksum from CSS to the end at CSO (both taken from the
//!   packet's first descriptor). Two contexts are kept, one for TSE data descriptors and one
//!   for the others (as QEMU). TSO follows SDM §3.5.9 for TCP and UDP over IPv4 and IPv6; the
//!   IPv6 payload length is written as segment length − IPCSS − 40 (the SDM's formula omits the
//!   fixed header; later Intel manuals correct it). A packet longer than [`MAX_TX_PACKET`] bytes
//!   or whose data could not be read is dropped (its descriptors still complete). VLE + CTRL.VME
//!   inserts an 802.1Q tag (VET). Frames shorter than the 14-byte Ethernet header are not
//!   sent (with TCTL.PSP clear a runt could otherwise reach the backend). RCTL.LBM ≠ 0 or PHY
//!   control bit 14 loops frames back to the receive path instead of the backend.
//! * Bad guest input never panics. RDLEN/TDLEN bits 6:0 are read-only 0 (128-byte multiples);
//!   RDH/RDT/TDH/TDT are 16-bit. A ring with length 0, or head or tail ≥ its descriptor count,
//!   is not processed (the queue waits until software rewrites the registers). A descriptor
//!   fetch or write-back that fails ([`crate::DmaError`], e.g. a ring outside or partly outside
//!   RAM) stops that queue ([`E1000::rx_stalled`] / [`E1000::tx_stalled`]) with the head left at
//!   the failing descriptor — the 82540EM has no error interrupt for this; QEMU ignores such
//!   errors —; a write to any of the queue's ring registers (base, length, head, tail) or to
//!   RCTL/TCTL retries. A receive buffer outside RAM gets its descriptor written back with
//!   EOP and the RXE error bit (the rest of the frame is dropped), which drivers treat as a bad
//!   frame; a transmit buffer outside RAM drops the packet. Each pass over a ring handles at
//!   most one ring's worth of descriptors.
//! * Unimplemented or reserved registers read 0 and ignore writes; statistics registers are
//!   read-to-clear (a 64-bit pair clears when its high dword is read) and saturate.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;

use heron_net::NetBackend;

use crate::pci::{
    ConfigSpace, PciBar, PciBarKind, PciFunction, COMMAND_BUS_MASTER, COMMAND_INTERRUPT_DISABLE,
    COMMAND_IO_SPACE, COMMAND_MEMORY_SPACE, COMMAND_PARITY_ERROR_RESPONSE, COMMAND_SERR_ENABLE,
    QEMU_SUBSYSTEM_ID, QEMU_SUBSYSTEM_VENDOR, REG_BAR0, REG_CACHE_LINE_SIZE, REG_COMMAND,
    REG_INTERRUPT_LINE, REG_LATENCY_TIMER, REG_STATUS,
};
use crate::{Device, DmaMemory, Nanos};

/// PCI Vendor ID: Intel (SDM §4, PCI configuration space; EEPROM word 0x0E).
pub const E1000_VENDOR_ID: u16 = 0x8086;
/// PCI Device ID of the 82540EM desktop adapter (SDM §4, device ID table; EEPROM word 0x0D).
pub const E1000_DEVICE_ID: u16 = 0x100E;
/// PCI Revision ID reported (the 82540EM stepping QEMU's e1000 reports).
pub const E1000_REVISION: u8 = 0x03;
/// PCI Class Code: network controller, Ethernet (SDM §4, Class Code register).
pub const E1000_CLASS_CODE: u32 = 0x02_00_00;
/// Index of the memory BAR holding the register window (SDM §4, Memory BAR).
pub const MMIO_BAR: usize = 0;
/// Index of the I/O BAR holding IOADDR/IODATA (SDM §4, I/O BAR).
pub const IO_BAR: usize = 1;
/// Size of the memory-mapped register window, BAR0 (SDM §13: 128 KiB of register space).
pub const MMIO_SIZE: u64 = 0x2_0000;
/// Size of the I/O BAR (IOADDR at 0, IODATA at 4, the rest reserved; SDM §13 I/O-mapped access).
pub const IO_SIZE: u64 = 0x40;
/// MDIC PHY address of the internal PHY (SDM §13 MDIC.PHYADD; other addresses fail with MDIC.E).
pub const PHY_ADDRESS: u32 = 1;
/// Number of 16-bit words of the Microwire EEPROM (93C46 size, EECD.EE_SIZE = 0; SDM §5).
pub const EEPROM_WORDS: usize = 64;
/// The sum of EEPROM words 0x00–0x3F that software checks (SDM §5, checksum word 0x3F).
pub const EEPROM_CHECKSUM_SUM: u16 = 0xBABA;
/// Frames held while the receive ring has no free descriptors (the packet buffer, SDM §3.2).
pub const RX_QUEUE_FRAMES: usize = 64;
/// Bytes held while the receive ring has no free descriptors (the 82540EM's 48 KB default
/// receive packet buffer allocation, PBA.RXA, rounded up).
pub const RX_QUEUE_BYTES: usize = 64 * 1024;
/// At most this many frames are taken from the backend per [`E1000::poll_rx`] call.
pub const RX_FRAMES_PER_POLL: usize = 256;
/// Largest transmit packet (sum of a packet's data descriptor lengths) accepted: the 20-bit
/// TSO PAYLEN plus a 255-byte header (SDM §3.3.6). Longer packets are dropped.
pub const MAX_TX_PACKET: usize = (1 << 20) + 256;

/// Register offsets within BAR0 (SDM §13, register summary table).
pub mod regs {
    /// Device Control (SDM §13, CTRL).
    pub const CTRL: u32 = 0x0000;
    /// Device Status, read-only (SDM §13, STATUS).
    pub const STATUS: u32 = 0x0008;
    /// EEPROM/Flash Control and Data (SDM §13, EECD).
    pub const EECD: u32 = 0x0010;
    /// EEPROM Read (SDM §13, EERD).
    pub const EERD: u32 = 0x0014;
    /// Extended Device Control (SDM §13, CTRL_EXT).
    pub const CTRL_EXT: u32 = 0x0018;
    /// Flash Access (SDM §13, FLA).
    pub const FLA: u32 = 0x001C;
    /// MDI Control, the PHY register access window (SDM §13, MDIC).
    pub const MDIC: u32 = 0x0020;
    /// Flow Control Address Low (SDM §13, FCAL).
    pub const FCAL: u32 = 0x0028;
    /// Flow Control Address High (SDM §13, FCAH).
    pub const FCAH: u32 = 0x002C;
    /// Flow Control Type (SDM §13, FCT).
    pub const FCT: u32 = 0x0030;
    /// VLAN Ether Type (SDM §13, VET).
    pub const VET: u32 = 0x0038;
    /// Interrupt Cause Read (SDM §13, ICR).
    pub const ICR: u32 = 0x00C0;
    /// Interrupt Throttling (SDM §13, ITR).
    pub const ITR: u32 = 0x00C4;
    /// Interrupt Cause Set (SDM §13, ICS).
    pub const ICS: u32 = 0x00C8;
    /// Interrupt Mask Set/Read (SDM §13, IMS).
    pub const IMS: u32 = 0x00D0;
    /// Interrupt Mask Clear (SDM §13, IMC).
    pub const IMC: u32 = 0x00D8;
    /// Receive Control (SDM §13, RCTL).
    pub const RCTL: u32 = 0x0100;
    /// Flow Control Transmit Timer Value (SDM §13, FCTTV).
    pub const FCTTV: u32 = 0x0170;
    /// Transmit Configuration Word (SDM §13, TXCW).
    pub const TXCW: u32 = 0x0178;
    /// Receive Configuration Word, read-only (SDM §13, RXCW).
    pub const RXCW: u32 = 0x0180;
    /// Transmit Control (SDM §13, TCTL).
    pub const TCTL: u32 = 0x0400;
    /// Transmit Inter Packet Gap (SDM §13, TIPG).
    pub const TIPG: u32 = 0x0410;
    /// Adaptive IFS Throttle (SDM §13, AIT).
    pub const AIT: u32 = 0x0458;
    /// LED Control (SDM §13, LEDCTL).
    pub const LEDCTL: u32 = 0x0E00;
    /// Packet Buffer Allocation (SDM §13, PBA).
    pub const PBA: u32 = 0x1000;
    /// Flow Control Receive Threshold Low (SDM §13, FCRTL).
    pub const FCRTL: u32 = 0x2160;
    /// Flow Control Receive Threshold High (SDM §13, FCRTH).
    pub const FCRTH: u32 = 0x2168;
    /// Receive Data FIFO Head, diagnostic (SDM §13, RDFH).
    pub const RDFH: u32 = 0x2410;
    /// Receive Data FIFO Packet Count, diagnostic (SDM §13, RDFPC; RDFT/RDFHS/RDFTS lie
    /// between RDFH and it).
    pub const RDFPC: u32 = 0x2430;
    /// Receive Descriptor Base Address Low (SDM §13, RDBAL).
    pub const RDBAL: u32 = 0x2800;
    /// Receive Descriptor Base Address High (SDM §13, RDBAH).
    pub const RDBAH: u32 = 0x2804;
    /// Receive Descriptor Length in bytes (SDM §13, RDLEN).
    pub const RDLEN: u32 = 0x2808;
    /// Receive Descriptor Head (SDM §13, RDH).
    pub const RDH: u32 = 0x2810;
    /// Receive Descriptor Tail (SDM §13, RDT).
    pub const RDT: u32 = 0x2818;
    /// Receive Delay Timer (SDM §13, RDTR).
    pub const RDTR: u32 = 0x2820;
    /// Receive Descriptor Control (SDM §13, RXDCTL).
    pub const RXDCTL: u32 = 0x2828;
    /// Receive Interrupt Absolute Delay Timer (SDM §13, RADV).
    pub const RADV: u32 = 0x282C;
    /// Receive Small Packet Detect Interrupt (SDM §13, RSRPD).
    pub const RSRPD: u32 = 0x2C00;
    /// Transmit DMA Control (SDM §13, TXDMAC).
    pub const TXDMAC: u32 = 0x3000;
    /// Transmit Data FIFO Head, diagnostic (SDM §13, TDFH).
    pub const TDFH: u32 = 0x3410;
    /// Transmit Data FIFO Packet Count, diagnostic (SDM §13, TDFPC; TDFT/TDFHS/TDFTS lie
    /// between TDFH and it).
    pub const TDFPC: u32 = 0x3430;
    /// Transmit Descriptor Base Address Low (SDM §13, TDBAL).
    pub const TDBAL: u32 = 0x3800;
    /// Transmit Descriptor Base Address High (SDM §13, TDBAH).
    pub const TDBAH: u32 = 0x3804;
    /// Transmit Descriptor Length in bytes (SDM §13, TDLEN).
    pub const TDLEN: u32 = 0x3808;
    /// Transmit Descriptor Head (SDM §13, TDH).
    pub const TDH: u32 = 0x3810;
    /// Transmit Descriptor Tail (SDM §13, TDT).
    pub const TDT: u32 = 0x3818;
    /// Transmit Interrupt Delay Value (SDM §13, TIDV).
    pub const TIDV: u32 = 0x3820;
    /// Transmit Descriptor Control (SDM §13, TXDCTL).
    pub const TXDCTL: u32 = 0x3828;
    /// Transmit Absolute Interrupt Delay Value (SDM §13, TADV).
    pub const TADV: u32 = 0x382C;
    /// TCP Segmentation Pad and Minimum Threshold (SDM §13, TSPMT).
    pub const TSPMT: u32 = 0x3830;
    /// First statistics register, CRC Error Count (SDM §13 statistics, CRCERRS).
    pub const CRCERRS: u32 = 0x4000;
    /// Missed Packets Count (SDM §13 statistics, MPC).
    pub const MPC: u32 = 0x4010;
    /// Packets Received, 64 bytes (SDM §13 statistics, PRC64; PRC127…PRC1522
    /// follow at 4-byte steps).
    pub const PRC64: u32 = 0x405C;
    /// Good Packets Received Count (SDM §13 statistics, GPRC).
    pub const GPRC: u32 = 0x4074;
    /// Broadcast Packets Received Count (SDM §13 statistics, BPRC).
    pub const BPRC: u32 = 0x4078;
    /// Multicast Packets Received Count (SDM §13 statistics, MPRC).
    pub const MPRC: u32 = 0x407C;
    /// Good Packets Transmitted Count (SDM §13 statistics, GPTC).
    pub const GPTC: u32 = 0x4080;
    /// Good Octets Received Count, low dword (SDM §13 statistics, GORCL).
    pub const GORCL: u32 = 0x4088;
    /// Good Octets Received Count, high dword (SDM §13 statistics, GORCH).
    pub const GORCH: u32 = 0x408C;
    /// Good Octets Transmitted Count, low dword (SDM §13 statistics, GOTCL).
    pub const GOTCL: u32 = 0x4090;
    /// Good Octets Transmitted Count, high dword (SDM §13 statistics, GOTCH).
    pub const GOTCH: u32 = 0x4094;
    /// Receive No Buffers Count (SDM §13 statistics, RNBC).
    pub const RNBC: u32 = 0x40A0;
    /// Receive Oversize Count (SDM §13 statistics, ROC).
    pub const ROC: u32 = 0x40AC;
    /// Total Octets Received, low dword (SDM §13 statistics, TORL).
    pub const TORL: u32 = 0x40C0;
    /// Total Octets Received, high dword (SDM §13 statistics, TORH).
    pub const TORH: u32 = 0x40C4;
    /// Total Octets Transmitted, low dword (SDM §13 statistics, TOTL).
    pub const TOTL: u32 = 0x40C8;
    /// Total Octets Transmitted, high dword (SDM §13 statistics, TOTH).
    pub const TOTH: u32 = 0x40CC;
    /// Total Packets Received (SDM §13 statistics, TPR).
    pub const TPR: u32 = 0x40D0;
    /// Total Packets Transmitted (SDM §13 statistics, TPT).
    pub const TPT: u32 = 0x40D4;
    /// Packets Transmitted, 64 bytes (SDM §13 statistics, PTC64; PTC127…PTC1522
    /// follow at 4-byte steps).
    pub const PTC64: u32 = 0x40D8;
    /// Multicast Packets Transmitted Count (SDM §13 statistics, MPTC).
    pub const MPTC: u32 = 0x40F0;
    /// Broadcast Packets Transmitted Count (SDM §13 statistics, BPTC).
    pub const BPTC: u32 = 0x40F4;
    /// TCP Segmentation Context Transmitted Count (SDM §13 statistics, TSCTC).
    pub const TSCTC: u32 = 0x40F8;
    /// TCP Segmentation Context Transmit Fail Count, the last statistics register
    /// (SDM §13 statistics, TSCTFC).
    pub const TSCTFC: u32 = 0x40FC;
    /// Receive Checksum Control (SDM §13, RXCSUM).
    pub const RXCSUM: u32 = 0x5000;
    /// Multicast Table Array, 128 dwords (SDM §13, MTA\[n\] at 0x5200 + 4n).
    pub const MTA: u32 = 0x5200;
    /// Receive Address Low of entry 0 (SDM §13, RAL\[n\] at 0x5400 + 8n, n = 0–15).
    pub const RAL0: u32 = 0x5400;
    /// Receive Address High of entry 0 (SDM §13, RAH\[n\] at 0x5404 + 8n; bit 31 = AV).
    pub const RAH0: u32 = 0x5404;
    /// VLAN Filter Table Array, 128 dwords (SDM §13, VFTA\[n\] at 0x5600 + 4n).
    pub const VFTA: u32 = 0x5600;
    /// Wake Up Control (SDM §13, WUC).
    pub const WUC: u32 = 0x5800;
    /// Wake Up Filter Control (SDM §13, WUFC).
    pub const WUFC: u32 = 0x5808;
    /// Wake Up Status (SDM §13, WUS).
    pub const WUS: u32 = 0x5810;
    /// Management Control (SDM §13, MANC).
    pub const MANC: u32 = 0x5820;
    /// IP Address Valid (SDM §13, IPAV).
    pub const IPAV: u32 = 0x5838;
    /// IPv4 Address Table (SDM §13, IP4AT).
    pub const IP4AT: u32 = 0x5840;
    /// IPv6 Address Table (SDM §13, IP6AT).
    pub const IP6AT: u32 = 0x5880;
    /// Wake Up Packet Length (SDM §13, WUPL).
    pub const WUPL: u32 = 0x5900;
    /// Wake Up Packet Memory (SDM §13, WUPM).
    pub const WUPM: u32 = 0x5A00;
    /// Flexible Filter Length Table (SDM §13, FFLT).
    pub const FFLT: u32 = 0x5F00;
    /// Flexible Filter Mask Table (SDM §13, FFMT).
    pub const FFMT: u32 = 0x9000;
    /// Flexible Filter Value Table (SDM §13, FFVT).
    pub const FFVT: u32 = 0x9800;
    /// Packet Buffer Memory, diagnostic access (SDM §13, PBM: 0x10000–0x1FFFF).
    pub const PBM: u32 = 0x1_0000;
}

use regs::*;

/// CTRL bit 0: FD, full duplex (SDM §13, CTRL).
pub const CTRL_FD: u32 = 1 << 0;
/// CTRL bit 5: ASDE, auto-speed detection enable.
pub const CTRL_ASDE: u32 = 1 << 5;
/// CTRL bit 6: SLU, set link up.
pub const CTRL_SLU: u32 = 1 << 6;
/// CTRL bits 9:8 = 10b: speed 1000 Mb/s.
pub const CTRL_SPEED_1000: u32 = 2 << 8;
/// CTRL bit 26: RST, device reset (self-clearing).
pub const CTRL_RST: u32 = 1 << 26;
/// CTRL bit 30: VME, VLAN mode enable (tag stripping on receive, insertion on transmit).
pub const CTRL_VME: u32 = 1 << 30;
/// CTRL bit 31: PHY_RST, PHY reset.
pub const CTRL_PHY_RST: u32 = 1 << 31;

/// STATUS bit 0: FD, full duplex (SDM §13, STATUS).
pub const STATUS_FD: u32 = 1 << 0;
/// STATUS bit 1: LU, link up.
pub const STATUS_LU: u32 = 1 << 1;
/// STATUS bit 4: TXOFF, transmission paused by flow control (never set here).
pub const STATUS_TXOFF: u32 = 1 << 4;
/// STATUS bits 7:6 = 10b: link speed 1000 Mb/s.
pub const STATUS_SPEED_1000: u32 = 2 << 6;

/// EECD bit 0: SK, EEPROM clock (SDM §13, EECD).
pub const EECD_SK: u32 = 1 << 0;
/// EECD bit 1: CS, EEPROM chip select.
pub const EECD_CS: u32 = 1 << 1;
/// EECD bit 2: DI, data into the EEPROM.
pub const EECD_DI: u32 = 1 << 2;
/// EECD bit 3: DO, data out of the EEPROM (read-only).
pub const EECD_DO: u32 = 1 << 3;
/// EECD bits 5:4: FWE, flash write enable control.
pub const EECD_FWE_MASK: u32 = 3 << 4;
/// EECD bit 6: EE_REQ, software requests direct EEPROM access.
pub const EECD_REQ: u32 = 1 << 6;
/// EECD bit 7: EE_GNT, direct EEPROM access granted (read-only).
pub const EECD_GNT: u32 = 1 << 7;
/// EECD bit 8: EE_PRES, an EEPROM is present (read-only).
pub const EECD_PRES: u32 = 1 << 8;

/// EERD bit 0: START a read (SDM §13, EERD on the 82540EM).
pub const EERD_START: u32 = 1 << 0;
/// EERD bit 4: DONE, the read completed.
pub const EERD_DONE: u32 = 1 << 4;
/// EERD bits 15:8: word address.
pub const EERD_ADDR_SHIFT: u32 = 8;
/// EERD bits 31:16: data read.
pub const EERD_DATA_SHIFT: u32 = 16;

/// MDIC bits 20:16: PHY register address (SDM §13, MDIC).
pub const MDIC_REG_SHIFT: u32 = 16;
/// MDIC bits 25:21: PHY address.
pub const MDIC_PHY_SHIFT: u32 = 21;
/// MDIC bits 27:26 = 01b: write.
pub const MDIC_OP_WRITE: u32 = 1 << 26;
/// MDIC bits 27:26 = 10b: read.
pub const MDIC_OP_READ: u32 = 2 << 26;
/// MDIC bit 28: R, ready (the operation completed).
pub const MDIC_READY: u32 = 1 << 28;
/// MDIC bit 29: I, raise ICR.MDAC on completion.
pub const MDIC_INT_EN: u32 = 1 << 29;
/// MDIC bit 30: E, error (no PHY at that address / bad opcode).
pub const MDIC_ERROR: u32 = 1 << 30;

/// ICR bit 0: TXDW, transmit descriptor written back (SDM §13, ICR).
pub const ICR_TXDW: u32 = 1 << 0;
/// ICR bit 1: TXQE, transmit queue empty.
pub const ICR_TXQE: u32 = 1 << 1;
/// ICR bit 2: LSC, link status change.
pub const ICR_LSC: u32 = 1 << 2;
/// ICR bit 3: RXSEQ, receive sequence error (never set here).
pub const ICR_RXSEQ: u32 = 1 << 3;
/// ICR bit 4: RXDMT0, receive descriptor minimum threshold reached.
pub const ICR_RXDMT0: u32 = 1 << 4;
/// ICR bit 6: RXO, receiver overrun (a frame was dropped for lack of buffers).
pub const ICR_RXO: u32 = 1 << 6;
/// ICR bit 7: RXT0, receiver timer interrupt (a frame was written to the ring).
pub const ICR_RXT0: u32 = 1 << 7;
/// ICR bit 9: MDAC, MDI/O access complete.
pub const ICR_MDAC: u32 = 1 << 9;
/// ICR bit 16: SRPD, small receive packet detected (RSRPD).
pub const ICR_SRPD: u32 = 1 << 16;
/// ICR bits that exist on the 82540EM (bits 16:0).
pub const ICR_VALID: u32 = 0x0001_FFFF;

/// RCTL bit 1: EN, receiver enable (SDM §13, RCTL).
pub const RCTL_EN: u32 = 1 << 1;
/// RCTL bit 2: SBP, store bad packets.
pub const RCTL_SBP: u32 = 1 << 2;
/// RCTL bit 3: UPE, unicast promiscuous.
pub const RCTL_UPE: u32 = 1 << 3;
/// RCTL bit 4: MPE, multicast promiscuous.
pub const RCTL_MPE: u32 = 1 << 4;
/// RCTL bit 5: LPE, long packet enable.
pub const RCTL_LPE: u32 = 1 << 5;
/// RCTL bits 7:6: LBM, loopback mode (0 = normal).
pub const RCTL_LBM_MASK: u32 = 3 << 6;
/// RCTL bits 9:8: RDMTS, receive descriptor minimum threshold (1/2, 1/4, 1/8 of the ring).
pub const RCTL_RDMTS_SHIFT: u32 = 8;
/// RCTL bits 13:12: MO, multicast offset (which destination bits index the MTA).
pub const RCTL_MO_SHIFT: u32 = 12;
/// RCTL bit 15: BAM, broadcast accept mode.
pub const RCTL_BAM: u32 = 1 << 15;
/// RCTL bits 17:16: BSIZE, receive buffer size (with BSEX).
pub const RCTL_BSIZE_SHIFT: u32 = 16;
/// RCTL bit 18: VFE, VLAN filter enable.
pub const RCTL_VFE: u32 = 1 << 18;
/// RCTL bit 19: CFIEN, canonical form indicator enable.
pub const RCTL_CFIEN: u32 = 1 << 19;
/// RCTL bit 20: CFI, canonical form indicator value accepted.
pub const RCTL_CFI: u32 = 1 << 20;
/// RCTL bit 25: BSEX, buffer size extension (×16).
pub const RCTL_BSEX: u32 = 1 << 25;
/// RCTL bit 26: SECRC, strip Ethernet CRC.
pub const RCTL_SECRC: u32 = 1 << 26;

/// TCTL bit 1: EN, transmit enable (SDM §13, TCTL).
pub const TCTL_EN: u32 = 1 << 1;
/// TCTL bit 3: PSP, pad short packets.
pub const TCTL_PSP: u32 = 1 << 3;

/// RXCSUM bits 7:0: PCSS, packet checksum start (SDM §13, RXCSUM).
pub const RXCSUM_PCSS_MASK: u32 = 0xFF;
/// RXCSUM bit 8: IPOFL, IP checksum offload.
pub const RXCSUM_IPOFL: u32 = 1 << 8;
/// RXCSUM bit 9: TUOFL, TCP/UDP checksum offload.
pub const RXCSUM_TUOFL: u32 = 1 << 9;

/// RAH bit 31: AV, address valid (SDM §13, RAH).
pub const RAH_AV: u32 = 1 << 31;

/// Receive descriptor status bit 0: DD, descriptor done (SDM §3.2, receive descriptor status).
pub const RXD_STAT_DD: u8 = 1 << 0;
/// Receive descriptor status bit 1: EOP, end of packet.
pub const RXD_STAT_EOP: u8 = 1 << 1;
/// Receive descriptor status bit 2: IXSM, ignore checksum indication.
pub const RXD_STAT_IXSM: u8 = 1 << 2;
/// Receive descriptor status bit 3: VP, packet is 802.1Q (tag stripped into the special field).
pub const RXD_STAT_VP: u8 = 1 << 3;
/// Receive descriptor status bit 5: TCPCS, TCP/UDP checksum calculated.
pub const RXD_STAT_TCPCS: u8 = 1 << 5;
/// Receive descriptor status bit 6: IPCS, IPv4 header checksum calculated.
pub const RXD_STAT_IPCS: u8 = 1 << 6;
/// Receive descriptor error bit 5: TCPE, TCP/UDP checksum error (SDM §3.2, Table 3-3).
pub const RXD_ERR_TCPE: u8 = 1 << 5;
/// Receive descriptor error bit 6: IPE, IP checksum error.
pub const RXD_ERR_IPE: u8 = 1 << 6;
/// Receive descriptor error bit 7: RXE, receive data error (here: buffer outside RAM).
pub const RXD_ERR_RXE: u8 = 1 << 7;

/// Transmit command bit 0: EOP, end of packet (SDM §3.3.3.1, §3.3.7.1).
pub const TXD_CMD_EOP: u8 = 1 << 0;
/// Transmit command bit 1: IFCS, insert FCS.
pub const TXD_CMD_IFCS: u8 = 1 << 1;
/// Transmit command bit 2: IC (legacy: insert checksum) / TSE (data/context: TCP segmentation).
pub const TXD_CMD_IC_TSE: u8 = 1 << 2;
/// Transmit command bit 3: RS, report status (write back DD).
pub const TXD_CMD_RS: u8 = 1 << 3;
/// Transmit command bit 4: RPS, report packet sent (82544; treated like RS).
pub const TXD_CMD_RPS: u8 = 1 << 4;
/// Transmit command bit 5: DEXT, extended descriptor (context or data).
pub const TXD_CMD_DEXT: u8 = 1 << 5;
/// Transmit command bit 6: VLE, insert the VLAN tag from the special field.
pub const TXD_CMD_VLE: u8 = 1 << 6;
/// Transmit command bit 7: IDE, interrupt delay enable.
pub const TXD_CMD_IDE: u8 = 1 << 7;
/// Transmit status bit 0: DD, descriptor done (SDM §3.3.3.2).
pub const TXD_STAT_DD: u8 = 1 << 0;
/// Context descriptor TUCMD bit 0: TCP (1) or UDP (0) (SDM §3.3.6).
pub const TXD_TUCMD_TCP: u8 = 1 << 0;
/// Context descriptor TUCMD bit 1: IP, IPv4 (1) or IPv6 (0).
pub const TXD_TUCMD_IP: u8 = 1 << 1;
/// Data descriptor POPTS bit 0: IXSM, insert IP checksum (SDM §3.3.7.3).
pub const TXD_POPTS_IXSM: u8 = 1 << 0;
/// Data descriptor POPTS bit 1: TXSM, insert TCP/UDP checksum.
pub const TXD_POPTS_TXSM: u8 = 1 << 1;

/// PHY register 0: control (SDM §13, PHY registers: PHY Control Register).
pub const PHY_CTRL: usize = 0;
/// PHY register 1: status.
pub const PHY_STATUS: usize = 1;
/// PHY register 2: PHY identifier 1 (0x0141).
pub const PHY_ID1: usize = 2;
/// PHY register 3: PHY identifier 2 (0x0C20: M88E1011 model, revision 0).
pub const PHY_ID2: usize = 3;
/// PHY register 4: auto-negotiation advertisement.
pub const PHY_AUTONEG_ADV: usize = 4;
/// PHY register 5: link partner ability.
pub const PHY_LP_ABILITY: usize = 5;
/// PHY register 9: 1000BASE-T control.
pub const PHY_1000T_CTRL: usize = 9;
/// PHY register 10: 1000BASE-T status.
pub const PHY_1000T_STATUS: usize = 10;
/// PHY register 17: PHY specific status (speed, duplex, resolved, link).
pub const PHY_SPEC_STATUS: usize = 17;

/// PHY status: link up (bit 2) and auto-negotiation complete (bit 5), over the fixed ability
/// bits 0x7949 (SDM §13, PHY Status Register).
const PHY_STATUS_BASE: u16 = 0x7949;
const PHY_STATUS_LINK: u16 = 0x0004;
const PHY_STATUS_AN_DONE: u16 = 0x0020;
/// PHY control bits: reset (15), loopback (14), restart auto-negotiation (9).
const PHY_CTRL_RESET: u16 = 1 << 15;
const PHY_CTRL_LOOPBACK: u16 = 1 << 14;
const PHY_CTRL_RESTART_AN: u16 = 1 << 9;

/// Default CTRL after reset: FD, ASDE, SLU, speed 1000.
const CTRL_DEFAULT: u32 = CTRL_FD | CTRL_ASDE | CTRL_SLU | CTRL_SPEED_1000;
/// CTRL_EXT bit 13: EE_RST, reload from EEPROM (self-clearing).
const CTRL_EXT_EE_RST: u32 = 1 << 13;

const ETH_HLEN: usize = 14;
const ETH_ZLEN: usize = 60;
const ETH_FCS_LEN: usize = 4;
/// Longest frame accepted with RCTL.LPE clear, FCS included (SDM §13, RCTL.LPE).
const MAX_STD_FRAME: usize = 1522;
/// Longest frame accepted with RCTL.LPE set, FCS included.
const MAX_LONG_FRAME: usize = 16384;

/// The 82540EM's EEPROM image (SDM §5, EEPROM address map), words 0x03–0x3E. Words 0–2 (the
/// MAC address) and 0x3F (the checksum) are filled in by [`eeprom_image`]. 0x04 = 0xFFFF:
/// default LED settings; 0x08–0x09: PBA number; 0x0A: initialization control word 1; 0x0B /
/// 0x0C: subsystem ID / vendor (overwritten with Heron's); 0x0D / 0x0E: device / vendor ID;
/// 0x0F: initialization control word 2 (bits 13:12 = symmetric + asymmetric pause, which
/// drivers use to pick flow control); 0x10–0x23: PHY, LED, SDP and power settings of a stock
/// 82540EM card; 0x24: initialization control word 3 (bit 10 APM enable); the rest is the
/// unprogrammed 0xFFFF of the PXE area.
const EEPROM_TEMPLATE: [u16; 0x25] = [
    0x0000,
    0x0000,
    0x0000,
    0x0000,
    0xFFFF,
    0x0000,
    0x0000,
    0x0000, // 0x00
    0x3000,
    0x1000,
    0x6403,
    0x0000,
    0x0000,
    E1000_DEVICE_ID,
    E1000_VENDOR_ID,
    0x3040, // 0x08
    0x0008,
    0x2000,
    0x7E14,
    0x0048,
    0x1000,
    0x00D8,
    0x0000,
    0x2700, // 0x10
    0x6CC9,
    0x3150,
    0x0722,
    0x040B,
    0x0984,
    0x0000,
    0xC000,
    0x0706, // 0x18
    0x1008,
    0x0000,
    0x0F04,
    0x7FFF,
    0x4D01, // 0x20
];

/// The EEPROM contents for `mac` (SDM §5): MAC in words 0–2 (low byte first), Heron's
/// subsystem IDs in 0x0B/0x0C, and word 0x3F chosen so that words 0x00–0x3F sum to 0xBABA.
pub fn eeprom_image(mac: [u8; 6]) -> [u16; EEPROM_WORDS] {
    let mut w = [0xFFFFu16; EEPROM_WORDS];
    w[..EEPROM_TEMPLATE.len()].copy_from_slice(&EEPROM_TEMPLATE);
    for i in 0..3 {
        w[i] = u16::from_le_bytes([mac[2 * i], mac[2 * i + 1]]);
    }
    w[0x0B] = QEMU_SUBSYSTEM_ID;
    w[0x0C] = QEMU_SUBSYSTEM_VENDOR;
    let sum = w[..EEPROM_WORDS - 1]
        .iter()
        .fold(0u16, |a, &b| a.wrapping_add(b));
    w[EEPROM_WORDS - 1] = EEPROM_CHECKSUM_SUM.wrapping_sub(sum);
    w
}

/// What the machine must decode for the NIC, derived from its configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E1000Decode {
    /// BAR0 base address when Memory Space is enabled and BAR0 is programmed (nonzero).
    pub mmio: Option<u64>,
    /// BAR1 base port when I/O Space is enabled and BAR1 is programmed (nonzero).
    pub io: Option<u16>,
    /// PCI Command Bus Master Enable: the device may DMA.
    pub bus_master: bool,
}

impl E1000Decode {
    /// Evaluates an e1000 configuration space (PCI Local Bus Spec 3.0 §6.2.2 Command,
    /// §6.2.5.1 BARs).
    pub fn from_config(config: &ConfigSpace) -> Self {
        let cmd = config.command();
        let mmio = config
            .bar(MMIO_BAR)
            .map(|b| b.address)
            .filter(|&a| a != 0 && cmd & COMMAND_MEMORY_SPACE != 0);
        let io = config
            .bar(IO_BAR)
            .map(|b| b.address)
            .filter(|&a| a != 0 && a <= 0xFFFF && cmd & COMMAND_IO_SPACE != 0)
            .map(|a| a as u16);
        E1000Decode {
            mmio,
            io,
            bus_master: cmd & COMMAND_BUS_MASTER != 0,
        }
    }
}

/// Microwire EEPROM opcodes after the start bit (SDM §5, Microwire interface).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MwTarget {
    Word(u8),
    All,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MwCommit {
    Write(u8, u16),
    WriteAll(u16),
    Erase(u8),
    EraseAll,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum MwPhase {
    /// Waiting for the start bit (a 1 on DI at a rising SK edge).
    #[default]
    Idle,
    /// Shifting in the 2-bit opcode and 6-bit address.
    Command { bits: u8, value: u16 },
    /// Shifting out data: `pos` bits sent so far from word `addr` on; `out` is DO.
    Read { addr: u8, pos: u32, out: bool },
    /// Shifting in 16 data bits of a WRITE / WRAL.
    Data {
        target: MwTarget,
        bits: u8,
        value: u16,
    },
    /// Command complete; waiting for CS to drop.
    Done,
}

/// State of the bit-banged Microwire EEPROM interface (EECD SK/CS/DI/DO).
#[derive(Debug, Clone, Default)]
struct Microwire {
    cs: bool,
    sk: bool,
    di: bool,
    phase: MwPhase,
    write_enabled: bool,
    pending: Option<MwCommit>,
}

/// A TCP/IP context (SDM §3.3.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct TxContext {
    ipcss: u8,
    ipcso: u8,
    ipcse: u16,
    tucss: u8,
    tucso: u8,
    tucse: u16,
    tucmd: u8,
    hdrlen: u8,
    mss: u16,
}

impl TxContext {
    fn parse(d: &[u8; 16]) -> Self {
        TxContext {
            ipcss: d[0],
            ipcso: d[1],
            ipcse: u16::from_le_bytes([d[2], d[3]]),
            tucss: d[4],
            tucso: d[5],
            tucse: u16::from_le_bytes([d[6], d[7]]),
            tucmd: d[11],
            hdrlen: d[13],
            mss: u16::from_le_bytes([d[14], d[15]]),
        }
    }
}

/// The packet being gathered from transmit descriptors up to EOP.
#[derive(Debug, Clone, Default)]
struct TxPacket {
    data: Vec<u8>,
    started: bool,
    /// Extended (data) descriptors rather than legacy ones.
    dext: bool,
    /// TSE of the first data descriptor.
    tse: bool,
    /// POPTS of the first data descriptor.
    popts: u8,
    /// Legacy IC with (CSS, CSO) of the first descriptor.
    legacy_csum: Option<(u8, u8)>,
    /// A buffer could not be read or the packet grew past [`MAX_TX_PACKET`].
    bad: bool,
}

/// Outcome of an attempt to write a frame into the receive ring.
enum RxOutcome {
    /// The frame is in the ring (possibly truncated by a bad buffer address).
    Done,
    /// Not enough free descriptors (or the ring is not usable now): keep the frame.
    NoBuffers,
}

/// The Intel 82540EM: PCI configuration space ([`PciFunction`]), registers in BAR0
/// ([`Device`]) and BAR1 ([`E1000::io_read`] / [`E1000::io_write`]), the NIC's receive and
/// transmit engines, EEPROM and PHY. See the module documentation for the wiring.
pub struct E1000 {
    config: ConfigSpace,
    backend: Box<dyn NetBackend>,
    dma: Box<dyn DmaMemory>,
    now: Nanos,
    /// Register file, one dword per 4 bytes of BAR0 (plain storage and side-effect registers).
    regs: Vec<u32>,
    ioaddr: u32,
    eeprom: [u16; EEPROM_WORDS],
    mw: Microwire,
    phy: [u16; 32],
    link_up: bool,
    irq_line: bool,
    throttle_until: Option<Nanos>,
    rx_queue: VecDeque<Vec<u8>>,
    rx_queue_bytes: usize,
    rx_stalled: bool,
    tx_stalled: bool,
    tx_ctx: TxContext,
    tso_ctx: TxContext,
    tx_pkt: TxPacket,
}

impl std::fmt::Debug for E1000 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("E1000")
            .field("mac", &self.mac())
            .field("ctrl", &format_args!("{:#010x}", self.reg(CTRL)))
            .field("icr", &format_args!("{:#x}", self.reg(ICR)))
            .field("ims", &format_args!("{:#x}", self.reg(IMS)))
            .field("rctl", &format_args!("{:#x}", self.reg(RCTL)))
            .field("tctl", &format_args!("{:#x}", self.reg(TCTL)))
            .field("link_up", &self.link_up)
            .finish()
    }
}

/// Default value of the PHY registers (SDM §13 PHY registers; M88E1011 reset values).
/// Link-dependent registers (1, 5, 6, 10, 17) are computed on read.
fn phy_defaults() -> [u16; 32] {
    let mut p = [0u16; 32];
    p[PHY_CTRL] = 0x1140; // auto-negotiation enable, full duplex, speed 1000 (MSB)
    p[PHY_ID1] = 0x0141;
    p[PHY_ID2] = 0x0C20;
    p[PHY_AUTONEG_ADV] = 0x0DE1; // 10/100 HD/FD, pause, asymmetric pause, 802.3
    p[PHY_1000T_CTRL] = 0x0300; // advertise 1000BASE-T half and full duplex
    p[15] = 0x3000; // extended status: 1000BASE-T full/half capable
    p[16] = 0x0060; // PHY specific control: automatic MDI/MDI-X
    p[20] = 0x0C60; // extended PHY specific control
    p
}

/// PHY registers software may write (others are read-only and ignore writes).
fn phy_writable(reg: usize) -> bool {
    matches!(reg, 0 | 4 | 7 | 9 | 16 | 18 | 20 | 22..=31)
}

/// Plain read/write registers and their writable bits (SDM §13). `None`: not a plain register.
fn plain_mask(off: u32) -> Option<u32> {
    Some(match off {
        CTRL_EXT | FLA | FCAL | LEDCTL | PBA | TXDMAC | RXDCTL | TXDCTL | TSPMT | WUC | WUFC
        | WUS | MANC | IPAV | WUPL => 0xFFFF_FFFF,
        FCAH | FCT | VET | FCTTV | RADV | TIDV | TADV | AIT => 0x0000_FFFF,
        TXCW => 0xC000_FFFF,
        FCRTL | FCRTH => 0x8000_FFF8,
        RDFH..=RDFPC | TDFH..=TDFPC if off & 7 == 0 => 0x0000_FFFF,
        RDTR => 0x0000_FFFF,
        RSRPD => 0x0000_0FFF,
        TIPG => 0x3FFF_FFFF,
        RXCSUM => 0x0000_03FF,
        0x5200..=0x53FC => 0xFFFF_FFFF, // MTA
        0x5400..=0x547C => {
            if off & 4 == 0 {
                0xFFFF_FFFF // RAL
            } else {
                0x8003_FFFF // RAH: AV, AS, address bits 47:32
            }
        }
        0x5600..=0x57FC => 0xFFFF_FFFF,                 // VFTA
        0x5840..=0x5858 if off & 7 == 0 => 0xFFFF_FFFF, // IP4AT
        0x5880..=0x588C => 0xFFFF_FFFF,                 // IP6AT
        0x5A00..=0x5A7C => 0xFFFF_FFFF,                 // WUPM
        0x5F00..=0x5F18 if off & 7 == 0 => 0x0000_00FF, // FFLT
        0x9000..=0x93F8 if off & 7 == 0 => 0x0000_000F, // FFMT
        0x9800..=0x9BF8 if off & 7 == 0 => 0x0000_00FF, // FFVT
        0x1_0000..=0x1_FFFC => 0xFFFF_FFFF,             // PBM
        _ => return None,
    })
}

fn is_stat(off: u32) -> bool {
    (CRCERRS..=TSCTFC).contains(&off)
}

/// Low dwords of 64-bit statistics pairs: reading them does not clear.
fn is_stat_low_half(off: u32) -> bool {
    matches!(off, GORCL | GOTCL | TORL | TOTL)
}

/// Index of the size-bucket counter (PRC64…PRC1522 / PTC64…PTC1522) for a frame of `len`
/// bytes including FCS (SDM §13, statistics registers).
fn size_bucket(base: u32, len: usize) -> u32 {
    let i = match len {
        0..=64 => 0,
        65..=127 => 1,
        128..=255 => 2,
        256..=511 => 3,
        512..=1023 => 4,
        _ => 5,
    };
    base + 4 * i
}

const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// The IEEE 802.3 frame check sequence (CRC-32) of `data`: what the NIC appends to received
/// frames when RCTL.SECRC is clear (SDM §13, RCTL), in memory order `to_le_bytes()`.
pub fn ethernet_fcs(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc = CRC_TABLE[((crc ^ b as u32) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Sum of big-endian 16-bit words of `data` (a trailing odd byte is the high byte of a word),
/// unfolded: the start of an RFC 1071 Internet checksum.
fn ones_sum(data: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        s += u16::from_be_bytes([c[0], c[1]]) as u64;
    }
    if let [b] = chunks.remainder() {
        s += (*b as u64) << 8;
    }
    s
}

/// Folds an unfolded ones'-complement sum to 16 bits.
fn fold(mut s: u64) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        *b.get(at + 3)?,
    ]))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// Computes the ones'-complement checksum of `buf[css..=cse]` (`cse` = 0: to the end) and
/// stores it big-endian at `cso` (SDM §3.3.3, §3.3.6). Nothing happens when the offsets are
/// out of range. `nonzero`: a result of 0 is sent as 0xFFFF (UDP).
fn insert_checksum(buf: &mut [u8], css: usize, cso: usize, cse: usize, nonzero: bool) {
    let end = if cse == 0 {
        buf.len()
    } else {
        (cse + 1).min(buf.len())
    };
    if css >= end || cso + 2 > buf.len() {
        return;
    }
    let mut c = !fold(ones_sum(&buf[css..end]));
    if c == 0 && nonzero {
        c = 0xFFFF;
    }
    put16(buf, cso, c);
}

/// Number of descriptors of a ring of `len_reg` bytes (RDLEN/TDLEN; bits 6:0 are always 0).
fn ring_entries(len_reg: u32) -> u32 {
    (len_reg & 0x000F_FF80) / 16
}

impl E1000 {
    /// A powered-on 82540EM with Ethernet address `mac` (stored in EEPROM words 0–2 and loaded
    /// into RAL0/RAH0 at every reset), transmitting to and receiving from `backend`, doing DMA
    /// through `dma`. The link is up.
    pub fn new(mac: [u8; 6], backend: Box<dyn NetBackend>, dma: Box<dyn DmaMemory>) -> Self {
        let mut e = E1000 {
            config: Self::initial_config(),
            backend,
            dma,
            now: 0,
            regs: vec![0; (MMIO_SIZE / 4) as usize],
            ioaddr: 0,
            eeprom: eeprom_image(mac),
            mw: Microwire::default(),
            phy: phy_defaults(),
            link_up: true,
            irq_line: false,
            throttle_until: None,
            rx_queue: VecDeque::new(),
            rx_queue_bytes: 0,
            rx_stalled: false,
            tx_stalled: false,
            tx_ctx: TxContext::default(),
            tso_ctx: TxContext::default(),
            tx_pkt: TxPacket::default(),
        };
        e.mac_reset();
        e
    }

    /// The configuration space at power-on (SDM §4): IDs, class, INTA#, BAR0 = 128 KiB memory,
    /// BAR1 = 64 bytes I/O; Command writable bits I/O, memory, bus master, MWI, parity, SERR#,
    /// interrupt disable; Status = DEVSEL medium with write-1-to-clear error bits.
    fn initial_config() -> ConfigSpace {
        let mut c = ConfigSpace::new(E1000_VENDOR_ID, E1000_DEVICE_ID);
        c.set_revision(E1000_REVISION);
        c.set_class_code(E1000_CLASS_CODE);
        c.set_header_type(0x00);
        c.set_subsystem(QEMU_SUBSYSTEM_VENDOR, QEMU_SUBSYSTEM_ID);
        c.set_wmask_u16(
            REG_COMMAND,
            COMMAND_IO_SPACE
                | COMMAND_MEMORY_SPACE
                | COMMAND_BUS_MASTER
                | (1 << 4) // memory write and invalidate
                | COMMAND_PARITY_ERROR_RESPONSE
                | COMMAND_SERR_ENABLE
                | COMMAND_INTERRUPT_DISABLE,
        );
        c.set_u16(REG_STATUS, 0x0200);
        c.set_w1c_mask_u16(REG_STATUS, 0xF900);
        c.set_wmask_u8(REG_CACHE_LINE_SIZE, 0xFF);
        c.set_wmask_u8(REG_LATENCY_TIMER, 0xFF);
        c.set_interrupt_pin(1);
        c.init_bar(
            MMIO_BAR,
            PciBarKind::Memory32 {
                prefetchable: false,
            },
            MMIO_SIZE,
        )
        .expect("BAR0 definition is valid");
        c.init_bar(IO_BAR, PciBarKind::Io, IO_SIZE)
            .expect("BAR1 definition is valid");
        c
    }

    /// Hardware reset (PCI RST#, power-on): configuration space, MAC registers and PHY return
    /// to their power-on state; the EEPROM keeps its contents (it is non-volatile) and the
    /// link state is kept.
    pub fn reset(&mut self) {
        self.config = Self::initial_config();
        self.phy = phy_defaults();
        self.ioaddr = 0;
        self.mw = Microwire::default();
        self.mac_reset();
    }

    /// Software reset (CTRL.RST, SDM §13 CTRL; §14 reset operation): every MAC register back
    /// to its default, interrupts deasserted, receive/transmit state and queued frames dropped,
    /// RAL0/RAH0 reloaded from EEPROM words 0–2. PCI configuration, PHY and EEPROM are kept.
    fn mac_reset(&mut self) {
        self.regs.iter_mut().for_each(|r| *r = 0);
        self.set_reg(CTRL, CTRL_DEFAULT);
        self.set_reg(VET, 0x8100);
        self.set_reg(PBA, 0x0010_0030);
        self.set_reg(LEDCTL, 0x0706_8302);
        self.set_reg(RXCSUM, RXCSUM_IPOFL | RXCSUM_TUOFL);
        self.set_reg(TCTL, TCTL_PSP);
        self.set_reg(TIPG, 0x0060_2008);
        let m = self.eeprom_mac();
        self.set_reg(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.set_reg(RAH0, u16::from_le_bytes([m[4], m[5]]) as u32 | RAH_AV);
        self.irq_line = false;
        self.throttle_until = None;
        self.rx_queue.clear();
        self.rx_queue_bytes = 0;
        self.rx_stalled = false;
        self.tx_stalled = false;
        self.tx_ctx = TxContext::default();
        self.tso_ctx = TxContext::default();
        self.tx_pkt = TxPacket::default();
    }

    fn eeprom_mac(&self) -> [u8; 6] {
        let mut m = [0u8; 6];
        for i in 0..3 {
            m[2 * i..2 * i + 2].copy_from_slice(&self.eeprom[i].to_le_bytes());
        }
        m
    }

    /// The receive address in RAL0/RAH0 (what software programmed, initially the EEPROM's).
    pub fn mac(&self) -> [u8; 6] {
        let l = self.reg(RAL0).to_le_bytes();
        let h = self.reg(RAH0).to_le_bytes();
        [l[0], l[1], l[2], l[3], h[0], h[1]]
    }

    /// The 64 EEPROM words (SDM §5).
    pub fn eeprom(&self) -> &[u16; EEPROM_WORDS] {
        &self.eeprom
    }

    /// Level of INTA# (SDM §13.4.17 ICR, §13.4.20 IMS, ITR): some cause in ICR is enabled in
    /// IMS and asserted (interrupt throttling lets assertions through at most once per ITR
    /// interval), and the PCI Command Interrupt Disable bit is clear.
    pub fn irq_level(&self) -> bool {
        self.irq_line && self.config.command() & COMMAND_INTERRUPT_DISABLE == 0
    }

    /// Whether the link is up (STATUS.LU, PHY status bit 2).
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Connects or disconnects the cable: updates STATUS.LU and the PHY status registers and
    /// sets ICR.LSC when the state changes (SDM §13 ICR.LSC). Frames are neither sent nor
    /// received while the link is down.
    pub fn set_link_up(&mut self, up: bool) {
        if up != self.link_up {
            self.link_up = up;
            self.raise(ICR_LSC);
        }
    }

    /// The receive ring stopped on a descriptor DMA error (see the module documentation); it
    /// resumes when software writes RDBAL, RDBAH, RDLEN, RDH, RDT or RCTL.
    pub fn rx_stalled(&self) -> bool {
        self.rx_stalled
    }

    /// The transmit ring stopped on a descriptor DMA error; it resumes when software writes
    /// TDBAL, TDBAH, TDLEN, TDH, TDT or TCTL.
    pub fn tx_stalled(&self) -> bool {
        self.tx_stalled
    }

    /// Number of received frames waiting for free receive descriptors.
    pub fn rx_queue_len(&self) -> usize {
        self.rx_queue.len()
    }

    /// Decoding state for the machine (see [`E1000Decode`]).
    pub fn decode(&self) -> E1000Decode {
        E1000Decode::from_config(&self.config)
    }

    /// Programs the function as PC firmware would before handing over to an OS without a BIOS
    /// (PCI Local Bus Spec 3.0 §6.2.5.1): BAR0 = `mmio_base` (128 KiB aligned), BAR1 =
    /// `io_base` (64-byte aligned), Interrupt Line = `irq_line`, Command = I/O + memory space.
    pub fn configure_like_firmware(&mut self, mmio_base: u32, io_base: u16, irq_line: u8) {
        let c = &mut self.config;
        c.set_u32(REG_BAR0, mmio_base & !(MMIO_SIZE as u32 - 1));
        c.set_u32(REG_BAR0 + 4, (io_base as u32 & !(IO_SIZE as u32 - 1)) | 1);
        c.set_u8(REG_INTERRUPT_LINE, irq_line);
        let cmd = c.command() | COMMAND_IO_SPACE | COMMAND_MEMORY_SPACE;
        c.set_u16(REG_COMMAND, cmd);
    }

    fn bus_master(&self) -> bool {
        self.config.command() & COMMAND_BUS_MASTER != 0
    }

    fn reg(&self, off: u32) -> u32 {
        self.regs[(off >> 2) as usize]
    }

    fn set_reg(&mut self, off: u32, v: u32) {
        self.regs[(off >> 2) as usize] = v;
    }

    fn advance(&mut self, now: Nanos) {
        self.now = self.now.max(now);
    }

    // ----- interrupts (SDM §13.4, ICR/ICS/IMS/IMC/ITR) -----

    /// Sets interrupt causes in ICR and re-evaluates INTA#.
    fn raise(&mut self, cause: u32) {
        let icr = self.reg(ICR) | (cause & ICR_VALID);
        self.set_reg(ICR, icr);
        self.update_irq();
    }

    /// INTA# follows (ICR & IMS) != 0, except that an assertion inside the throttling window
    /// opened by the previous assertion waits for the window's end.
    fn update_irq(&mut self) {
        let pending = self.reg(ICR) & self.reg(IMS) != 0;
        if !pending {
            self.irq_line = false;
            return;
        }
        if self.irq_line {
            return;
        }
        if let Some(t) = self.throttle_until {
            if self.now < t {
                return;
            }
            self.throttle_until = None;
        }
        self.irq_line = true;
        let interval = (self.reg(ITR) & 0xFFFF) as u64 * 256;
        if interval != 0 {
            self.throttle_until = Some(self.now + interval);
        }
    }

    // ----- register access -----

    /// Register read with side effects (`off` dword aligned, < [`MMIO_SIZE`]).
    fn read_reg(&mut self, off: u32) -> u32 {
        match off {
            STATUS => {
                let mut s = STATUS_FD | STATUS_SPEED_1000;
                if self.link_up {
                    s |= STATUS_LU;
                }
                s
            }
            EECD => self.eecd_value(),
            ICR => {
                let v = self.reg(ICR);
                self.set_reg(ICR, 0);
                self.update_irq();
                v
            }
            ICS => self.reg(ICR),
            IMC => 0,
            CTRL | EERD | MDIC | ITR | IMS | RCTL | TCTL | RDBAL | RDBAH | RDLEN | RDH | RDT
            | TDBAL | TDBAH | TDLEN | TDH | TDT => self.reg(off),
            _ if is_stat(off) => {
                let v = self.reg(off);
                if !is_stat_low_half(off) {
                    self.set_reg(off, 0);
                    if matches!(off, GORCH | GOTCH | TORH | TOTH) {
                        self.set_reg(off - 4, 0);
                    }
                }
                v
            }
            _ if plain_mask(off).is_some() => self.reg(off),
            _ => 0,
        }
    }

    /// Register write of the bits in `mask` (`off` dword aligned, < [`MMIO_SIZE`]).
    fn write_reg(&mut self, off: u32, val: u32, mask: u32) {
        let old = if off == EECD {
            self.eecd_value()
        } else {
            self.reg(off)
        };
        let merged = (old & !mask) | (val & mask);
        let bits = val & mask;
        match off {
            CTRL => {
                if merged & CTRL_RST != 0 {
                    self.mac_reset();
                    self.update_irq();
                    return;
                }
                if merged & CTRL_PHY_RST != 0 && self.reg(CTRL) & CTRL_PHY_RST == 0 {
                    self.phy = phy_defaults();
                }
                self.set_reg(CTRL, merged);
            }
            STATUS => {}
            EECD => self.eecd_write(merged),
            EERD => {
                let mut v = merged & !(EERD_START | EERD_DONE) & 0x0000_FF00;
                if merged & EERD_START != 0 {
                    let addr = ((merged >> EERD_ADDR_SHIFT) & 0xFF) as usize;
                    let data = self.eeprom.get(addr).copied().unwrap_or(0) as u32;
                    v |= EERD_DONE | (data << EERD_DATA_SHIFT);
                }
                self.set_reg(EERD, v);
            }
            CTRL_EXT => self.set_reg(CTRL_EXT, merged & !CTRL_EXT_EE_RST),
            MDIC => self.mdic_write(merged),
            ICR => {
                let v = self.reg(ICR) & !bits;
                self.set_reg(ICR, v);
                self.update_irq();
            }
            ICS => self.raise(bits),
            IMS => {
                let v = self.reg(IMS) | (bits & ICR_VALID);
                self.set_reg(IMS, v);
                self.update_irq();
            }
            IMC => {
                let v = self.reg(IMS) & !bits;
                self.set_reg(IMS, v);
                self.update_irq();
            }
            ITR => self.set_reg(ITR, merged & 0xFFFF),
            RCTL => {
                self.set_reg(RCTL, merged & 0x07FF_FFFE);
                self.rx_stalled = false;
                if merged & RCTL_EN == 0 {
                    // A disabled receiver keeps nothing of what it held (SDM §13, RCTL.EN).
                    self.rx_queue.clear();
                    self.rx_queue_bytes = 0;
                }
                self.rx_flush();
            }
            TCTL => {
                self.set_reg(TCTL, merged & 0x03FF_FFFA);
                self.tx_stalled = false;
                self.process_tx();
            }
            RDBAL | TDBAL => self.set_reg(off, merged & 0xFFFF_FFF0),
            RDLEN | TDLEN => self.set_reg(off, merged & 0x000F_FF80),
            RDBAH | TDBAH => self.set_reg(off, merged),
            RDH | TDH => self.set_reg(off, merged & 0xFFFF),
            RDT => {
                self.set_reg(RDT, merged & 0xFFFF);
                self.rx_stalled = false;
                self.rx_flush();
            }
            TDT => {
                self.set_reg(TDT, merged & 0xFFFF);
                self.tx_stalled = false;
                self.process_tx();
            }
            _ if is_stat(off) => {}
            _ => {
                if let Some(m) = plain_mask(off) {
                    self.set_reg(off, merged & m);
                }
            }
        }
        if matches!(off, RDBAL | RDBAH | RDLEN | RDH) {
            self.rx_stalled = false;
        }
        if matches!(off, TDBAL | TDBAH | TDLEN | TDH) {
            self.tx_stalled = false;
        }
    }

    /// A BAR0 read of `data.len()` bytes at `offset`: each dword touched is read once (with
    /// its side effects); bytes beyond the 128 KiB window read 0xFF.
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        let mut i = 0;
        while i < data.len() {
            let Some(addr) = offset.checked_add(i as u64).filter(|&a| a < MMIO_SIZE) else {
                data[i] = 0xFF;
                i += 1;
                continue;
            };
            let lane = (addr & 3) as usize;
            let n = (4 - lane).min(data.len() - i);
            let v = self.read_reg((addr & !3) as u32).to_le_bytes();
            data[i..i + n].copy_from_slice(&v[lane..lane + n]);
            i += n;
        }
    }

    /// A BAR0 write: each dword touched is written once with a mask of the bytes written.
    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let Some(addr) = offset.checked_add(i as u64).filter(|&a| a < MMIO_SIZE) else {
                i += 1;
                continue;
            };
            let lane = (addr & 3) as usize;
            let n = (4 - lane).min(data.len() - i);
            let mut v = [0u8; 4];
            let mut m = [0u8; 4];
            v[lane..lane + n].copy_from_slice(&data[i..i + n]);
            m[lane..lane + n].fill(0xFF);
            self.write_reg(
                (addr & !3) as u32,
                u32::from_le_bytes(v),
                u32::from_le_bytes(m),
            );
            i += n;
        }
    }

    /// Guest read from the I/O BAR (BAR1) at `offset` (SDM §13, I/O-mapped internal register
    /// access): offsets 0–3 IOADDR (the register offset, bits 16:0), 4–7 IODATA (the register
    /// at IOADDR, with the register's read side effects), 8–63 reserved (all ones).
    pub fn io_read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        self.advance(now);
        data.fill(0xFF);
        let mut i = 0;
        while i < data.len() {
            let o = offset.saturating_add(i as u64);
            match o {
                0..=3 => {
                    data[i] = (self.ioaddr >> (8 * o)) as u8;
                    i += 1;
                }
                4..=7 => {
                    let n = (8 - o as usize).min(data.len() - i);
                    let target = (self.ioaddr & 0x1_FFFC) as u64 + (o - 4);
                    self.mmio_read(target, &mut data[i..i + n]);
                    i += n;
                }
                _ => break,
            }
        }
    }

    /// Guest write to the I/O BAR: IOADDR (offsets 0–3; bits 16:0 kept) or IODATA (offsets
    /// 4–7, written to the register at IOADDR); other offsets are ignored.
    pub fn io_write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        self.advance(now);
        let mut i = 0;
        while i < data.len() {
            let o = offset.saturating_add(i as u64);
            match o {
                0..=3 => {
                    let sh = 8 * o as u32;
                    let v = (self.ioaddr & !(0xFF << sh)) | ((data[i] as u32) << sh);
                    self.ioaddr = v & 0x1_FFFF;
                    i += 1;
                }
                4..=7 => {
                    let n = (8 - o as usize).min(data.len() - i);
                    let target = (self.ioaddr & 0x1_FFFC) as u64 + (o - 4);
                    self.mmio_write(target, &data[i..i + n]);
                    i += n;
                }
                _ => break,
            }
        }
    }

    // ----- EEPROM (SDM §5, EECD, EERD) -----

    fn eecd_value(&self) -> u32 {
        let c = self.reg(EECD) & (EECD_FWE_MASK | EECD_REQ);
        let mut v = c | EECD_PRES;
        if c & EECD_REQ != 0 {
            v |= EECD_GNT;
        }
        if self.mw.sk {
            v |= EECD_SK;
        }
        if self.mw.cs {
            v |= EECD_CS;
        }
        if self.mw.di {
            v |= EECD_DI;
        }
        let dout = match self.mw.phase {
            MwPhase::Read { out, .. } => out,
            _ => true,
        };
        if dout {
            v |= EECD_DO;
        }
        v
    }

    fn eecd_write(&mut self, v: u32) {
        self.set_reg(EECD, v & (EECD_FWE_MASK | EECD_REQ));
        let cs = v & EECD_CS != 0;
        let sk = v & EECD_SK != 0;
        let di = v & EECD_DI != 0;
        if !cs {
            if self.mw.cs {
                // CS falling edge: a complete WRITE/ERASE command executes now.
                if let Some(c) = self.mw.pending.take() {
                    self.eeprom_commit(c);
                }
            }
            self.mw.phase = MwPhase::Idle;
            self.mw.pending = None;
        } else {
            if !self.mw.cs {
                self.mw.phase = MwPhase::Idle;
                self.mw.pending = None;
            }
            if sk && !self.mw.sk {
                self.eeprom_clock(di);
            }
        }
        self.mw.cs = cs;
        self.mw.sk = sk;
        self.mw.di = di;
    }

    fn eeprom_commit(&mut self, c: MwCommit) {
        if !self.mw.write_enabled {
            return;
        }
        match c {
            MwCommit::Write(a, v) => self.eeprom[a as usize % EEPROM_WORDS] = v,
            MwCommit::WriteAll(v) => self.eeprom.fill(v),
            MwCommit::Erase(a) => self.eeprom[a as usize % EEPROM_WORDS] = 0xFFFF,
            MwCommit::EraseAll => self.eeprom.fill(0xFFFF),
        }
    }

    /// One rising SK edge with CS high and DI = `di` (Microwire: start bit, 2-bit opcode,
    /// 6-bit address, then 16 data bits in or out, most significant first).
    fn eeprom_clock(&mut self, di: bool) {
        let d = di as u16;
        self.mw.phase = match self.mw.phase {
            MwPhase::Idle if di => MwPhase::Command { bits: 0, value: 0 },
            MwPhase::Idle => MwPhase::Idle,
            MwPhase::Command { bits, value } => {
                let value = (value << 1) | d;
                let bits = bits + 1;
                if bits < 8 {
                    MwPhase::Command { bits, value }
                } else {
                    let addr = (value & 0x3F) as u8;
                    match value >> 6 {
                        0b10 => MwPhase::Read {
                            addr,
                            pos: 0,
                            out: false,
                        },
                        0b01 => MwPhase::Data {
                            target: MwTarget::Word(addr),
                            bits: 0,
                            value: 0,
                        },
                        0b11 => {
                            self.mw.pending = Some(MwCommit::Erase(addr));
                            MwPhase::Done
                        }
                        _ => match addr >> 4 {
                            0b11 => {
                                self.mw.write_enabled = true;
                                MwPhase::Done
                            }
                            0b00 => {
                                self.mw.write_enabled = false;
                                MwPhase::Done
                            }
                            0b01 => MwPhase::Data {
                                target: MwTarget::All,
                                bits: 0,
                                value: 0,
                            },
                            _ => {
                                self.mw.pending = Some(MwCommit::EraseAll);
                                MwPhase::Done
                            }
                        },
                    }
                }
            }
            MwPhase::Read { addr, pos, .. } => {
                let word = self.eeprom[(addr as usize + (pos / 16) as usize) % EEPROM_WORDS];
                let out = (word >> (15 - pos % 16)) & 1 != 0;
                MwPhase::Read {
                    addr,
                    pos: pos.wrapping_add(1),
                    out,
                }
            }
            MwPhase::Data {
                target,
                bits,
                value,
            } => {
                let value = (value << 1) | d;
                let bits = bits + 1;
                if bits < 16 {
                    MwPhase::Data {
                        target,
                        bits,
                        value,
                    }
                } else {
                    self.mw.pending = Some(match target {
                        MwTarget::Word(a) => MwCommit::Write(a, value),
                        MwTarget::All => MwCommit::WriteAll(value),
                    });
                    MwPhase::Done
                }
            }
            MwPhase::Done => MwPhase::Done,
        };
    }

    // ----- PHY (SDM §13 MDIC and PHY registers) -----

    fn phy_read(&self, reg: usize) -> u16 {
        let up = self.link_up;
        match reg {
            PHY_STATUS => {
                PHY_STATUS_BASE
                    | if up {
                        PHY_STATUS_LINK | PHY_STATUS_AN_DONE
                    } else {
                        0
                    }
            }
            PHY_LP_ABILITY => {
                if up {
                    0x45E1 // acknowledge, pause, 10/100 HD/FD, 802.3
                } else {
                    0
                }
            }
            6 => up as u16, // auto-negotiation expansion: link partner can auto-negotiate
            PHY_1000T_STATUS => {
                if up {
                    0x3C00 // local/remote receiver OK, partner 1000BASE-T FD/HD
                } else {
                    0
                }
            }
            PHY_SPEC_STATUS => {
                if up {
                    0xAC00 // 1000 Mb/s, full duplex, speed/duplex resolved, link
                } else {
                    0
                }
            }
            _ => self.phy.get(reg).copied().unwrap_or(0),
        }
    }

    fn phy_write(&mut self, reg: usize, v: u16) {
        if !phy_writable(reg) {
            return;
        }
        if reg == PHY_CTRL {
            // Reset and restart auto-negotiation complete at once and self-clear; bits 5:0
            // are reserved.
            self.phy[PHY_CTRL] = v & !(PHY_CTRL_RESET | PHY_CTRL_RESTART_AN | 0x3F);
        } else {
            self.phy[reg] = v;
        }
    }

    fn mdic_write(&mut self, v: u32) {
        let reg = ((v >> MDIC_REG_SHIFT) & 0x1F) as usize;
        let phy = (v >> MDIC_PHY_SHIFT) & 0x1F;
        let op = v & (3 << 26);
        let mut out = v & !(MDIC_READY | MDIC_ERROR);
        if phy != PHY_ADDRESS || (op != MDIC_OP_READ && op != MDIC_OP_WRITE) {
            out |= MDIC_ERROR;
        } else if op == MDIC_OP_READ {
            out = (out & !0xFFFF) | self.phy_read(reg) as u32;
        } else {
            self.phy_write(reg, v as u16);
        }
        self.set_reg(MDIC, out | MDIC_READY);
        if v & MDIC_INT_EN != 0 {
            self.raise(ICR_MDAC);
        }
    }

    fn loopback(&self) -> bool {
        self.reg(RCTL) & RCTL_LBM_MASK != 0 || self.phy[PHY_CTRL] & PHY_CTRL_LOOPBACK != 0
    }

    // ----- statistics (SDM §13, statistics registers) -----

    fn stat_inc(&mut self, off: u32) {
        let v = self.reg(off).saturating_add(1);
        self.set_reg(off, v);
    }

    fn stat_add64(&mut self, low: u32, n: u64) {
        let cur = ((self.reg(low + 4) as u64) << 32) | self.reg(low) as u64;
        let v = cur.saturating_add(n);
        self.set_reg(low, v as u32);
        self.set_reg(low + 4, (v >> 32) as u32);
    }

    // ----- receive (SDM §3.2) -----

    /// Pulls frames from the backend (after [`NetBackend::poll`]) into the receive ring, at
    /// most [`RX_FRAMES_PER_POLL`] per call, and retries frames waiting for descriptors and any
    /// transmit work that waited for Bus Master Enable. Frames arriving while the receiver
    /// (RCTL.EN) or the link is off are discarded.
    pub fn poll_rx(&mut self, now: Nanos) {
        self.advance(now);
        self.backend.poll();
        self.rx_flush();
        for _ in 0..RX_FRAMES_PER_POLL {
            let Some(frame) = self.backend.recv() else {
                break;
            };
            self.receive_frame(frame);
        }
        if self.reg(TDH) != self.reg(TDT) {
            self.process_tx();
        }
        self.update_irq();
    }

    /// One frame from the wire (no FCS): size check, filtering, then into the ring or the
    /// packet-buffer queue.
    fn receive_frame(&mut self, mut frame: Vec<u8>) {
        if !self.link_up || self.reg(RCTL) & RCTL_EN == 0 {
            return;
        }
        if frame.len() < ETH_ZLEN {
            frame.resize(ETH_ZLEN, 0);
        }
        let wire_len = frame.len() + ETH_FCS_LEN;
        self.stat_inc(TPR);
        self.stat_add64(TORL, wire_len as u64);
        let rctl = self.reg(RCTL);
        let limit = if rctl & RCTL_LPE != 0 {
            MAX_LONG_FRAME
        } else {
            MAX_STD_FRAME
        };
        if wire_len > limit {
            self.stat_inc(ROC);
            return;
        }
        if !self.accept(&frame) {
            return;
        }
        if self.rx_queue.is_empty() {
            match self.rx_deliver(&frame) {
                RxOutcome::Done => return,
                RxOutcome::NoBuffers => self.stat_inc(RNBC),
            }
        }
        if self.rx_queue.len() < RX_QUEUE_FRAMES
            && self.rx_queue_bytes + frame.len() <= RX_QUEUE_BYTES
        {
            self.rx_queue_bytes += frame.len();
            self.rx_queue.push_back(frame);
        } else {
            self.stat_inc(MPC);
            self.raise(ICR_RXO);
        }
    }

    /// Moves queued frames into the ring while descriptors are available.
    fn rx_flush(&mut self) {
        while let Some(f) = self.rx_queue.pop_front() {
            match self.rx_deliver(&f) {
                RxOutcome::Done => self.rx_queue_bytes -= f.len(),
                RxOutcome::NoBuffers => {
                    self.rx_queue.push_front(f);
                    break;
                }
            }
        }
    }

    /// Receive address filtering (SDM §3.2 / §13 RCTL, RAL/RAH, MTA, VFTA): VLAN filter for
    /// tagged frames when RCTL.VFE, then broadcast (BAM), multicast (MPE or the MTA hash
    /// selected by RCTL.MO), unicast promiscuous (UPE), and the 16 exact address filters.
    fn accept(&self, f: &[u8]) -> bool {
        let rctl = self.reg(RCTL);
        let vet = (self.reg(VET) & 0xFFFF) as u16;
        if let (Some(et), Some(tci)) = (be16(f, 12), be16(f, 14)) {
            if et == vet && rctl & RCTL_VFE != 0 {
                if rctl & RCTL_CFIEN != 0 && ((tci >> 12) & 1 != 0) != (rctl & RCTL_CFI != 0) {
                    return false;
                }
                let vid = (tci & 0xFFF) as u32;
                if self.reg(VFTA + 4 * (vid >> 5)) & (1 << (vid & 31)) == 0 {
                    return false;
                }
            }
        }
        let da = &f[0..6];
        let sa = &f[6..12];
        let broadcast = da.iter().all(|&b| b == 0xFF);
        let multicast = da[0] & 1 != 0;
        if broadcast && rctl & RCTL_BAM != 0 {
            return true;
        }
        if multicast {
            if rctl & RCTL_MPE != 0 {
                return true;
            }
            let hash = match (rctl >> RCTL_MO_SHIFT) & 3 {
                0 => (da[4] >> 4) as u32 | (da[5] as u32) << 4,
                1 => (da[4] >> 3) as u32 | (da[5] as u32) << 5,
                2 => (da[4] >> 2) as u32 | (da[5] as u32) << 6,
                _ => da[4] as u32 | (da[5] as u32) << 8,
            } & 0xFFF;
            if self.reg(MTA + 4 * (hash >> 5)) & (1 << (hash & 31)) != 0 {
                return true;
            }
        } else if rctl & RCTL_UPE != 0 {
            return true;
        }
        (0..16).any(|i| {
            let rah = self.reg(RAH0 + 8 * i);
            if rah & RAH_AV == 0 {
                return false;
            }
            let l = self.reg(RAL0 + 8 * i).to_le_bytes();
            let h = rah.to_le_bytes();
            let addr = [l[0], l[1], l[2], l[3], h[0], h[1]];
            match (rah >> 16) & 3 {
                0 => addr == da,
                1 => addr == sa,
                _ => false,
            }
        })
    }

    /// Receive buffer size from RCTL.BSIZE / BSEX (SDM §13, RCTL). The reserved BSEX=1,
    /// BSIZE=00 encoding is treated as 2048.
    fn rx_buf_size(&self) -> usize {
        let rctl = self.reg(RCTL);
        let bsize = (rctl >> RCTL_BSIZE_SHIFT) & 3;
        if rctl & RCTL_BSEX != 0 {
            [2048, 16384, 8192, 4096][bsize as usize]
        } else {
            [2048, 1024, 512, 256][bsize as usize]
        }
    }

    /// Checksum results for the receive descriptor (SDM §3.2, §13 RXCSUM): (status bits,
    /// error bits, packet checksum from PCSS).
    fn rx_checksum(&self, f: &[u8]) -> (u8, u8, u16) {
        let rxcsum = self.reg(RXCSUM);
        let pcss = ((rxcsum & RXCSUM_PCSS_MASK) as usize).min(f.len());
        let pkt_csum = fold(ones_sum(&f[pcss..]));
        if rxcsum & (RXCSUM_IPOFL | RXCSUM_TUOFL) == 0 {
            return (RXD_STAT_IXSM, 0, pkt_csum);
        }
        let (mut st, mut er) = (0u8, 0u8);
        if be16(f, 12) != Some(0x0800) || f.len() < ETH_HLEN + 20 {
            return (st, er, pkt_csum);
        }
        let ip = &f[ETH_HLEN..];
        let ihl = (ip[0] & 0x0F) as usize * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || ihl > ip.len() {
            return (st, er, pkt_csum);
        }
        if rxcsum & RXCSUM_IPOFL != 0 {
            st |= RXD_STAT_IPCS;
            if fold(ones_sum(&ip[..ihl])) != 0xFFFF {
                er |= RXD_ERR_IPE;
            }
        }
        let total = (be16(ip, 2).unwrap_or(0) as usize).clamp(ihl, ip.len());
        let fragment = be16(ip, 6).unwrap_or(0) & 0x3FFF != 0;
        let proto = ip[9];
        let l4 = &ip[ihl..total];
        if rxcsum & RXCSUM_TUOFL != 0 && !fragment {
            let ok_len = match proto {
                6 => l4.len() >= 20,
                17 => l4.len() >= 8,
                _ => false,
            };
            if ok_len {
                st |= RXD_STAT_TCPCS;
                let udp_none = proto == 17 && be16(l4, 6) == Some(0);
                if !udp_none {
                    let pseudo = ones_sum(&ip[12..20]) + proto as u64 + l4.len() as u64;
                    if fold(pseudo + ones_sum(l4)) != 0xFFFF {
                        er |= RXD_ERR_TCPE;
                    }
                }
            }
        }
        (st, er, pkt_csum)
    }

    /// Writes one frame (padded, no FCS) into the receive ring, or reports that it must wait.
    fn rx_deliver(&mut self, frame: &[u8]) -> RxOutcome {
        if self.rx_stalled || !self.bus_master() || !self.link_up {
            return RxOutcome::NoBuffers;
        }
        let rctl = self.reg(RCTL);
        if rctl & RCTL_EN == 0 {
            return RxOutcome::NoBuffers;
        }
        let n = ring_entries(self.reg(RDLEN));
        let (head, tail) = (self.reg(RDH), self.reg(RDT));
        if n == 0 || head >= n || tail >= n {
            return RxOutcome::NoBuffers;
        }
        let base = ((self.reg(RDBAH) as u64) << 32) | self.reg(RDBAL) as u64;
        let free = (tail + n - head) % n;

        // What goes to memory: VLAN tag stripped (CTRL.VME), FCS appended unless SECRC.
        let mut data = frame.to_vec();
        let mut tci = None;
        let vet = (self.reg(VET) & 0xFFFF) as u16;
        if self.reg(CTRL) & CTRL_VME != 0 && be16(&data, 12) == Some(vet) && data.len() >= 18 {
            tci = be16(&data, 14);
            data.drain(12..16);
        }
        let (csum_status, csum_errors, pkt_csum) = self.rx_checksum(&data);
        if rctl & RCTL_SECRC == 0 {
            let fcs = ethernet_fcs(&data);
            data.extend_from_slice(&fcs.to_le_bytes());
        }

        // Plan: the descriptors needed for the whole frame must be free.
        let bufsz = self.rx_buf_size();
        let mut plan: Vec<(u32, u64, usize)> = Vec::new();
        let mut remaining = data.len();
        let mut idx = head;
        while remaining > 0 {
            if plan.len() as u32 >= free {
                return RxOutcome::NoBuffers;
            }
            let Some(daddr) = base.checked_add(16 * idx as u64) else {
                self.rx_stalled = true;
                return RxOutcome::NoBuffers;
            };
            let mut d = [0u8; 8];
            if self.dma.read(daddr, &mut d).is_err() {
                self.rx_stalled = true;
                return RxOutcome::NoBuffers;
            }
            let buf = u64::from_le_bytes(d);
            let take = if buf == 0 { 0 } else { bufsz.min(remaining) };
            plan.push((idx, buf, take));
            remaining -= take;
            idx = (idx + 1) % n;
        }

        // Execute.
        let mut off = 0;
        let last = plan.len() - 1;
        for (k, &(idx, buf, take)) in plan.iter().enumerate() {
            let mut status = RXD_STAT_DD;
            let mut errors = 0u8;
            let mut end = k == last;
            if take > 0 && self.dma.write(buf, &data[off..off + take]).is_err() {
                errors |= RXD_ERR_RXE;
                end = true;
            }
            off += take;
            let mut special = 0u16;
            let mut csum = 0u16;
            if end {
                status |= RXD_STAT_EOP | csum_status;
                errors |= csum_errors;
                csum = pkt_csum;
                if let Some(t) = tci {
                    status |= RXD_STAT_VP;
                    special = t;
                }
            }
            let mut wb = [0u8; 8];
            wb[0..2].copy_from_slice(&(take as u16).to_le_bytes());
            wb[2..4].copy_from_slice(&csum.to_le_bytes());
            wb[4] = status;
            wb[5] = errors;
            wb[6..8].copy_from_slice(&special.to_le_bytes());
            let daddr = base + 16 * idx as u64 + 8;
            if self.dma.write(daddr, &wb).is_err() {
                self.rx_stalled = true;
                break;
            }
            self.set_reg(RDH, (idx + 1) % n);
            if end {
                break;
            }
        }

        // Statistics and interrupts.
        let wire_len = frame.len() + ETH_FCS_LEN;
        self.stat_inc(GPRC);
        self.stat_add64(GORCL, wire_len as u64);
        self.stat_inc(size_bucket(PRC64, wire_len));
        if frame[0..6].iter().all(|&b| b == 0xFF) {
            self.stat_inc(BPRC);
        } else if frame[0] & 1 != 0 {
            self.stat_inc(MPRC);
        }
        let mut cause = ICR_RXT0;
        let free_after = (self.reg(RDT) + n - self.reg(RDH)) % n;
        let shift = ((rctl >> RCTL_RDMTS_SHIFT) & 3) + 1;
        if free_after <= n >> shift {
            cause |= ICR_RXDMT0;
        }
        let rsrpd = self.reg(RSRPD) & 0xFFF;
        if rsrpd != 0 && (data.len() as u32) < rsrpd {
            cause |= ICR_SRPD;
        }
        self.raise(cause);
        RxOutcome::Done
    }

    // ----- transmit (SDM §3.3, §3.4, §3.5) -----

    /// Processes transmit descriptors from TDH up to TDT (at most one ring's worth).
    fn process_tx(&mut self) {
        if self.reg(TCTL) & TCTL_EN == 0 || self.tx_stalled || !self.bus_master() {
            return;
        }
        let n = ring_entries(self.reg(TDLEN));
        let (mut head, tail) = (self.reg(TDH), self.reg(TDT));
        if n == 0 || head >= n || tail >= n || head == tail {
            return;
        }
        let base = ((self.reg(TDBAH) as u64) << 32) | self.reg(TDBAL) as u64;
        let mut cause = 0;
        for _ in 0..n {
            if head == tail {
                break;
            }
            let Some(daddr) = base.checked_add(16 * head as u64) else {
                self.tx_stalled = true;
                break;
            };
            let mut d = [0u8; 16];
            if self.dma.read(daddr, &mut d).is_err() {
                self.tx_stalled = true;
                break;
            }
            self.tx_descriptor(&d);
            if d[11] & (TXD_CMD_RS | TXD_CMD_RPS) != 0 {
                // Status byte: DD set, EC/LC/TU clear.
                let sta = (d[12] & 0xF0) | TXD_STAT_DD;
                if self.dma.write(daddr + 12, &[sta]).is_err() {
                    self.tx_stalled = true;
                    break;
                }
                cause |= ICR_TXDW;
            }
            head = (head + 1) % n;
            self.set_reg(TDH, head);
        }
        if head == tail {
            cause |= ICR_TXQE;
        }
        self.raise(cause);
    }

    /// One transmit descriptor: context descriptors set the offload context, data and legacy
    /// descriptors add their buffer to the packet, which is sent at EOP.
    fn tx_descriptor(&mut self, d: &[u8; 16]) {
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or([0; 8]));
        let cmd = d[11];
        if cmd & TXD_CMD_DEXT != 0 {
            match d[10] >> 4 {
                0 => {
                    // TCP/IP context descriptor (SDM §3.3.6).
                    let ctx = TxContext::parse(d);
                    if ctx.tucmd & TXD_CMD_IC_TSE != 0 {
                        self.tso_ctx = ctx;
                    } else {
                        self.tx_ctx = ctx;
                    }
                }
                1 => {
                    // TCP/IP data descriptor (SDM §3.3.7).
                    let len = (u32::from_le_bytes([d[8], d[9], d[10], 0]) & 0xF_FFFF) as usize;
                    if !self.tx_pkt.started {
                        self.tx_pkt.started = true;
                        self.tx_pkt.dext = true;
                        self.tx_pkt.tse = cmd & TXD_CMD_IC_TSE != 0;
                        self.tx_pkt.popts = d[13];
                    }
                    self.tx_append(addr, len);
                    if cmd & TXD_CMD_EOP != 0 {
                        let vlan =
                            (cmd & TXD_CMD_VLE != 0).then(|| u16::from_le_bytes([d[14], d[15]]));
                        self.tx_finish(vlan);
                    }
                }
                _ => {} // reserved descriptor type: no data, ignored
            }
        } else {
            // Legacy descriptor (SDM §3.3.3).
            let len = u16::from_le_bytes([d[8], d[9]]) as usize;
            if !self.tx_pkt.started {
                self.tx_pkt.started = true;
                self.tx_pkt.dext = false;
                self.tx_pkt.legacy_csum = (cmd & TXD_CMD_IC_TSE != 0).then_some((d[13], d[10]));
            }
            self.tx_append(addr, len);
            if cmd & TXD_CMD_EOP != 0 {
                let vlan = (cmd & TXD_CMD_VLE != 0).then(|| u16::from_le_bytes([d[14], d[15]]));
                self.tx_finish(vlan);
            }
        }
    }

    fn tx_append(&mut self, addr: u64, len: usize) {
        if len == 0 || self.tx_pkt.bad {
            return;
        }
        let start = self.tx_pkt.data.len();
        if start + len > MAX_TX_PACKET {
            self.tx_pkt.bad = true;
            return;
        }
        self.tx_pkt.data.resize(start + len, 0);
        if self.dma.read(addr, &mut self.tx_pkt.data[start..]).is_err() {
            self.tx_pkt.bad = true;
        }
    }

    /// End of packet: offloads, segmentation, VLAN insertion, transmission.
    fn tx_finish(&mut self, vlan: Option<u16>) {
        let pkt = std::mem::take(&mut self.tx_pkt);
        let tso = pkt.dext && pkt.tse;
        if pkt.bad {
            if tso {
                self.stat_inc(TSCTFC);
            }
            return;
        }
        let mut data = pkt.data;
        if tso {
            self.tso_send(data, pkt.popts, vlan);
            return;
        }
        if pkt.dext {
            let c = self.tx_ctx;
            if pkt.popts & TXD_POPTS_IXSM != 0 {
                insert_checksum(
                    &mut data,
                    c.ipcss as usize,
                    c.ipcso as usize,
                    c.ipcse as usize,
                    false,
                );
            }
            if pkt.popts & TXD_POPTS_TXSM != 0 {
                insert_checksum(
                    &mut data,
                    c.tucss as usize,
                    c.tucso as usize,
                    c.tucse as usize,
                    c.tucmd & TXD_TUCMD_TCP == 0,
                );
            }
        } else if let Some((css, cso)) = pkt.legacy_csum {
            insert_checksum(&mut data, css as usize, cso as usize, 0, false);
        }
        self.send_frame(data, vlan);
    }

    /// TCP segmentation (SDM §3.5): the first HDRLEN bytes are the header of every segment,
    /// the rest is cut into MSS-sized payloads; per segment the IP total length (IPv4) or
    /// payload length (IPv6), IPv4 identification, TCP sequence number and flags (FIN/PSH only
    /// in the last segment) or UDP length are updated, then the checksums are inserted.
    fn tso_send(&mut self, data: Vec<u8>, popts: u8, vlan: Option<u16>) {
        let c = self.tso_ctx;
        let hdr = c.hdrlen as usize;
        let mss = c.mss as usize;
        if hdr == 0 || hdr > data.len() || mss == 0 {
            self.stat_inc(TSCTFC);
            return;
        }
        let (header, payload) = data.split_at(hdr);
        let ipv4 = c.tucmd & TXD_TUCMD_IP != 0;
        let tcp = c.tucmd & TXD_TUCMD_TCP != 0;
        let (ipcss, tucss, tucso) = (c.ipcss as usize, c.tucss as usize, c.tucso as usize);
        let ip_id = be16(header, ipcss + 4).unwrap_or(0);
        let seq = be32(header, tucss + 4).unwrap_or(0);
        let segments = payload.len().div_ceil(mss).max(1);
        for i in 0..segments {
            let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
            let last = i + 1 == segments;
            let mut seg = Vec::with_capacity(hdr + chunk.len());
            seg.extend_from_slice(header);
            seg.extend_from_slice(chunk);
            let len = seg.len();
            if ipv4 {
                put16(&mut seg, ipcss + 2, len.saturating_sub(ipcss) as u16);
                put16(&mut seg, ipcss + 4, ip_id.wrapping_add(i as u16));
            } else {
                put16(&mut seg, ipcss + 4, len.saturating_sub(ipcss + 40) as u16);
            }
            if tcp {
                put32(&mut seg, tucss + 4, seq.wrapping_add((i * mss) as u32));
                if !last {
                    if let Some(flags) = seg.get_mut(tucss + 13) {
                        *flags &= !0x09; // PSH, FIN
                    }
                }
            } else {
                put16(&mut seg, tucss + 4, len.saturating_sub(tucss) as u16);
            }
            if popts & TXD_POPTS_TXSM != 0 {
                // The checksum field holds the pseudo-header sum without the length; add this
                // segment's TCP/UDP length before summing (SDM §3.5).
                if let Some(p) = be16(&seg, tucso) {
                    let l4_len = len.saturating_sub(tucss) as u64;
                    put16(&mut seg, tucso, fold(p as u64 + l4_len));
                }
                insert_checksum(&mut seg, tucss, tucso, 0, !tcp);
            }
            if popts & TXD_POPTS_IXSM != 0 {
                insert_checksum(&mut seg, ipcss, c.ipcso as usize, c.ipcse as usize, false);
            }
            self.send_frame(seg, vlan);
        }
        self.stat_inc(TSCTC);
    }

    /// Puts a frame on the wire: 802.1Q tag insertion (VLE with CTRL.VME), padding (PSP),
    /// statistics, then the backend or the receive path (loopback).
    fn send_frame(&mut self, mut f: Vec<u8>, vlan: Option<u16>) {
        if !self.link_up || f.len() < ETH_HLEN {
            return;
        }
        if let Some(tci) = vlan {
            if self.reg(CTRL) & CTRL_VME != 0 && f.len() >= 12 {
                let vet = (self.reg(VET) & 0xFFFF) as u16;
                let mut tag = [0u8; 4];
                tag[0..2].copy_from_slice(&vet.to_be_bytes());
                tag[2..4].copy_from_slice(&tci.to_be_bytes());
                f.splice(12..12, tag);
            }
        }
        if self.reg(TCTL) & TCTL_PSP != 0 && f.len() < ETH_ZLEN {
            f.resize(ETH_ZLEN, 0);
        }
        let wire_len = f.len() + ETH_FCS_LEN;
        self.stat_inc(GPTC);
        self.stat_inc(TPT);
        self.stat_add64(GOTCL, wire_len as u64);
        self.stat_add64(TOTL, wire_len as u64);
        self.stat_inc(size_bucket(PTC64, wire_len));
        if f.len() >= 6 {
            if f[0..6].iter().all(|&b| b == 0xFF) {
                self.stat_inc(BPTC);
            } else if f[0] & 1 != 0 {
                self.stat_inc(MPTC);
            }
        }
        if self.loopback() {
            self.receive_frame(f);
        } else {
            self.backend.send(&f);
        }
    }
}

impl Device for E1000 {
    /// BAR0 register read at `offset` (1–8 bytes, any alignment; see the module docs).
    /// Reserved registers read 0; bytes past the 128 KiB window read 0xFF.
    fn read(&mut self, now: Nanos, offset: u64, data: &mut [u8]) {
        self.advance(now);
        self.mmio_read(offset, data);
    }

    /// BAR0 register write at `offset`; writes to read-only or reserved registers are ignored.
    fn write(&mut self, now: Nanos, offset: u64, data: &[u8]) {
        self.advance(now);
        self.mmio_write(offset, data);
    }

    /// End of the interrupt throttling window when a cause is waiting for it (SDM §13, ITR).
    fn next_deadline(&self) -> Option<Nanos> {
        if self.irq_line || self.reg(ICR) & self.reg(IMS) == 0 {
            return None;
        }
        self.throttle_until
    }

    /// Asserts INTA# for causes that waited for the end of the throttling window.
    fn tick(&mut self, now: Nanos) {
        self.advance(now);
        self.update_irq();
    }
}

impl PciFunction for E1000 {
    fn config(&self) -> &ConfigSpace {
        &self.config
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.config
    }

    /// Configuration read; Status bit 3 (Interrupt Status) reflects the INTx assertion
    /// (PCI Local Bus Spec 3.0 §6.2.3).
    fn config_read(&mut self, reg: u8, data: &mut [u8]) {
        let st = self.config.status() & !0x0008;
        self.config
            .set_u16(REG_STATUS, st | if self.irq_line { 0x0008 } else { 0 });
        self.config.read(reg, data);
    }

    /// Configuration write; turning on Bus Master Enable lets waiting receive and transmit
    /// work proceed.
    fn config_write(&mut self, reg: u8, data: &[u8]) {
        self.config.write(reg, data);
        if self.bus_master() {
            self.rx_flush();
            self.process_tx();
        }
    }
}

/// A [`PciFunction`] standing for an [`E1000`] shared as `Rc<RefCell<E1000>>`, so that the
/// device's configuration space (SDM §4) can sit in [`crate::pci::PciHost`] (which owns
/// `Box<dyn PciFunction>`) while the machine keeps a handle for BAR accesses, `poll_rx` and
/// `irq_level`.
///
/// Configuration accesses are forwarded to the device (with its side effects); `bars` reads the
/// device's BARs live. `config()` returns a copy refreshed by every configuration access;
/// changes made through `config_mut()` are copied into the device at the next configuration
/// access (make device-side changes on the [`E1000`] itself when possible).
pub struct E1000PciProxy {
    dev: Rc<RefCell<E1000>>,
    shadow: ConfigSpace,
    dirty: Cell<bool>,
}

impl E1000PciProxy {
    /// A proxy for `dev`.
    pub fn new(dev: Rc<RefCell<E1000>>) -> Self {
        let shadow = dev.borrow().config().clone();
        E1000PciProxy {
            dev,
            shadow,
            dirty: Cell::new(false),
        }
    }

    /// The shared device.
    pub fn device(&self) -> &Rc<RefCell<E1000>> {
        &self.dev
    }

    fn sync(&mut self) {
        let mut d = self.dev.borrow_mut();
        if self.dirty.replace(false) {
            *d.config_mut() = self.shadow.clone();
            if d.bus_master() {
                d.rx_flush();
                d.process_tx();
            }
        }
        self.shadow = d.config().clone();
    }
}

impl PciFunction for E1000PciProxy {
    fn config(&self) -> &ConfigSpace {
        &self.shadow
    }

    fn config_mut(&mut self) -> &mut ConfigSpace {
        self.sync();
        self.dirty.set(true);
        &mut self.shadow
    }

    fn config_read(&mut self, reg: u8, data: &mut [u8]) {
        self.sync();
        self.dev.borrow_mut().config_read(reg, data);
    }

    fn config_write(&mut self, reg: u8, data: &[u8]) {
        self.sync();
        self.dev.borrow_mut().config_write(reg, data);
        self.shadow = self.dev.borrow().config().clone();
    }

    fn bars(&self) -> Vec<PciBar> {
        if self.dirty.get() {
            self.shadow.bars()
        } else {
            self.dev.borrow().config().bars()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::PciHost;

    const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const PEER: [u8; 6] = [0x52, 0x55, 0x0A, 0x00, 0x02, 0x02];
    const BCAST: [u8; 6] = [0xFF; 6];
    const RAM_SIZE: usize = 1 << 20;
    const RX_RING: u64 = 0x1000;
    const RX_BUFS: u64 = 0x1_0000;
    const TX_RING: u64 = 0x2000;
    const TX_BUFS: u64 = 0x4_0000;

    /// Vec-backed guest RAM.
    #[derive(Clone)]
    struct Ram(Rc<RefCell<Vec<u8>>>);

    impl Ram {
        fn new(size: usize) -> Self {
            Ram(Rc::new(RefCell::new(vec![0; size])))
        }
        fn put(&self, addr: u64, data: &[u8]) {
            let a = addr as usize;
            self.0.borrow_mut()[a..a + data.len()].copy_from_slice(data);
        }
        fn get(&self, addr: u64, len: usize) -> Vec<u8> {
            let a = addr as usize;
            self.0.borrow()[a..a + len].to_vec()
        }
    }

    impl DmaMemory for Ram {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), crate::DmaError> {
            let m = self.0.borrow();
            let err = crate::DmaError {
                addr,
                len: buf.len() as u64,
            };
            let end = addr.checked_add(buf.len() as u64).ok_or(err)?;
            if end > m.len() as u64 {
                return Err(err);
            }
            buf.copy_from_slice(&m[addr as usize..end as usize]);
            Ok(())
        }
        fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), crate::DmaError> {
            let mut m = self.0.borrow_mut();
            let err = crate::DmaError {
                addr,
                len: buf.len() as u64,
            };
            let end = addr.checked_add(buf.len() as u64).ok_or(err)?;
            if end > m.len() as u64 {
                return Err(err);
            }
            m[addr as usize..end as usize].copy_from_slice(buf);
            Ok(())
        }
    }

    #[derive(Default)]
    struct NetState {
        sent: Vec<Vec<u8>>,
        incoming: VecDeque<Vec<u8>>,
        polls: usize,
    }

    /// Test backend: records sent frames, hands out queued incoming ones.
    #[derive(Clone, Default)]
    struct Net(Rc<RefCell<NetState>>);

    impl NetBackend for Net {
        fn send(&mut self, frame: &[u8]) {
            self.0.borrow_mut().sent.push(frame.to_vec());
        }
        fn recv(&mut self) -> Option<Vec<u8>> {
            self.0.borrow_mut().incoming.pop_front()
        }
        fn poll(&mut self) {
            self.0.borrow_mut().polls += 1;
        }
    }

    struct H {
        nic: E1000,
        ram: Ram,
        net: Net,
        t: Nanos,
    }

    impl H {
        fn new() -> Self {
            let ram = Ram::new(RAM_SIZE);
            let net = Net::default();
            let mut nic = E1000::new(MAC, Box::new(net.clone()), Box::new(ram.clone()));
            nic.config_write(REG_COMMAND, &[0x07, 0x00]);
            H {
                nic,
                ram,
                net,
                t: 1000,
            }
        }
        fn r(&mut self, off: u32) -> u32 {
            let mut b = [0u8; 4];
            self.nic.read(self.t, off as u64, &mut b);
            u32::from_le_bytes(b)
        }
        fn w(&mut self, off: u32, v: u32) {
            self.nic.write(self.t, off as u64, &v.to_le_bytes());
        }
        /// RX ring of `n` descriptors at RX_RING, buffers of 4 KiB apart, head `head`,
        /// tail `tail`, then RCTL.
        fn rx_setup(&mut self, n: u32, head: u32, tail: u32, rctl: u32) {
            for i in 0..n as u64 {
                let mut d = [0u8; 16];
                d[0..8].copy_from_slice(&(RX_BUFS + i * 0x1000).to_le_bytes());
                self.ram.put(RX_RING + 16 * i, &d);
            }
            self.w(RDBAL, RX_RING as u32);
            self.w(RDBAH, 0);
            self.w(RDLEN, n * 16);
            self.w(RDH, head);
            self.w(RDT, tail);
            self.w(RCTL, rctl);
        }
        /// (length, checksum, status, errors, special) of RX descriptor `i`.
        fn rxd(&self, i: u64) -> (u16, u16, u8, u8, u16) {
            let d = self.ram.get(RX_RING + 16 * i, 16);
            (
                u16::from_le_bytes([d[8], d[9]]),
                u16::from_le_bytes([d[10], d[11]]),
                d[12],
                d[13],
                u16::from_le_bytes([d[14], d[15]]),
            )
        }
        fn rx_buf(&self, i: u64, len: usize) -> Vec<u8> {
            self.ram.get(RX_BUFS + i * 0x1000, len)
        }
        fn inject(&mut self, f: Vec<u8>) {
            self.net.0.borrow_mut().incoming.push_back(f);
            self.nic.poll_rx(self.t);
        }
        fn tx_setup(&mut self, n: u32, head: u32) {
            self.w(TDBAL, TX_RING as u32);
            self.w(TDBAH, 0);
            self.w(TDLEN, n * 16);
            self.w(TDH, head);
            self.w(TDT, head);
            self.w(TCTL, TCTL_EN | TCTL_PSP);
        }
        fn put_txd(&self, i: u64, d: [u8; 16]) {
            self.ram.put(TX_RING + 16 * i, &d);
        }
        fn txd_status(&self, i: u64) -> u8 {
            self.ram.get(TX_RING + 16 * i + 12, 1)[0]
        }
        fn sent(&self) -> Vec<Vec<u8>> {
            std::mem::take(&mut self.net.0.borrow_mut().sent)
        }
        fn mdic(&mut self, v: u32) -> u32 {
            self.w(MDIC, v);
            self.r(MDIC)
        }
    }

    fn legacy(addr: u64, len: u16, cmd: u8) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..10].copy_from_slice(&len.to_le_bytes());
        d[11] = cmd;
        d
    }

    #[allow(clippy::too_many_arguments)]
    fn context(
        ipcss: u8,
        ipcso: u8,
        ipcse: u16,
        tucss: u8,
        tucso: u8,
        tucse: u16,
        paylen: u32,
        tucmd: u8,
        hdrlen: u8,
        mss: u16,
    ) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0] = ipcss;
        d[1] = ipcso;
        d[2..4].copy_from_slice(&ipcse.to_le_bytes());
        d[4] = tucss;
        d[5] = tucso;
        d[6..8].copy_from_slice(&tucse.to_le_bytes());
        d[8..12].copy_from_slice(&(paylen & 0xF_FFFF).to_le_bytes());
        d[11] = tucmd | TXD_CMD_DEXT;
        d[13] = hdrlen;
        d[14..16].copy_from_slice(&mss.to_le_bytes());
        d
    }

    fn data_desc(addr: u64, len: u32, dcmd: u8, popts: u8) -> [u8; 16] {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&((len & 0xF_FFFF) | (1 << 20)).to_le_bytes());
        d[11] = dcmd | TXD_CMD_DEXT;
        d[13] = popts;
        d
    }

    fn eth(dst: [u8; 6], src: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// Reference Internet checksum (RFC 1071), written independently of the device's.
    fn inet_csum(data: &[u8]) -> u16 {
        let mut s: u32 = 0;
        for (i, &b) in data.iter().enumerate() {
            s += if i % 2 == 0 {
                (b as u32) << 8
            } else {
                b as u32
            };
            if s > 0xFFFF {
                s = (s & 0xFFFF) + (s >> 16);
            }
        }
        !(s as u16)
    }

    fn ip_ok(frame: &[u8]) -> bool {
        let ihl = (frame[14] & 0xF) as usize * 4;
        inet_csum(&frame[14..14 + ihl]) == 0
    }

    /// The TCP/UDP checksum of an IPv4 frame verifies against a freshly built pseudo header.
    fn l4_ok(frame: &[u8]) -> bool {
        let ip = &frame[14..];
        let ihl = (ip[0] & 0xF) as usize * 4;
        let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
        let l4 = &ip[ihl..total];
        let mut p = Vec::new();
        p.extend_from_slice(&ip[12..20]);
        p.push(0);
        p.push(ip[9]);
        p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        p.extend_from_slice(l4);
        inet_csum(&p) == 0
    }

    /// An Ethernet/IPv4/TCP frame with correct checksums (ports 1234 -> 80).
    fn tcp_frame(dst: [u8; 6], payload: &[u8], seq: u32, flags: u8, id: u16) -> Vec<u8> {
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&1234u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = flags;
        tcp[14..16].copy_from_slice(&8192u16.to_be_bytes());
        tcp.extend_from_slice(payload);
        let ip = ipv4(20 + tcp.len(), id, 6);
        let mut p = Vec::new();
        p.extend_from_slice(&ip[12..20]);
        p.extend_from_slice(&[0, 6]);
        p.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        p.extend_from_slice(&tcp);
        let c = inet_csum(&p);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let mut body = ip.to_vec();
        body.extend_from_slice(&tcp);
        eth(dst, PEER, 0x0800, &body)
    }

    fn ipv4(total: usize, id: u16, proto: u8) -> [u8; 20] {
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&[10, 0, 2, 15]);
        ip[16..20].copy_from_slice(&[10, 0, 2, 2]);
        let c = inet_csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        ip
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    fn cfg32(nic: &mut E1000, reg: u8) -> u32 {
        let mut b = [0u8; 4];
        nic.config_read(reg, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn pci_config_space_and_bars() {
        let ram = Ram::new(4096);
        let mut nic = E1000::new(MAC, Box::new(Net::default()), Box::new(ram));
        assert_eq!(cfg32(&mut nic, 0x00), 0x100E_8086);
        assert_eq!(cfg32(&mut nic, 0x08), 0x0200_0003);
        assert_eq!(cfg32(&mut nic, 0x2C), 0x1100_1AF4);
        assert_eq!(cfg32(&mut nic, 0x3C) >> 8 & 0xFF, 1, "INTA#");
        nic.config_write(0x10, &[0xFF; 4]);
        nic.config_write(0x14, &[0xFF; 4]);
        assert_eq!(cfg32(&mut nic, 0x10), 0xFFFE_0000, "128 KiB memory BAR");
        assert_eq!(cfg32(&mut nic, 0x14), 0xFFFF_FFC1, "64-byte I/O BAR");
        assert_eq!(cfg32(&mut nic, 0x18), 0);
        assert_eq!(nic.decode().mmio, None);
        nic.config_write(0x10, &0xFEBC_0000u32.to_le_bytes());
        nic.config_write(0x14, &0xC000u32.to_le_bytes());
        nic.config_write(REG_COMMAND, &[0x07, 0x00]);
        assert_eq!(
            nic.decode(),
            E1000Decode {
                mmio: Some(0xFEBC_0000),
                io: Some(0xC000),
                bus_master: true
            }
        );
        let bars = nic.bars();
        assert_eq!((bars[0].address, bars[0].size), (0xFEBC_0000, MMIO_SIZE));
        assert_eq!((bars[1].kind, bars[1].size), (PciBarKind::Io, IO_SIZE));
        // Firmware-style setup for direct boot.
        nic.reset();
        nic.configure_like_firmware(0xFEBC_0000, 0xC040, 11);
        let d = nic.decode();
        assert_eq!(
            (d.mmio, d.io, d.bus_master),
            (Some(0xFEBC_0000), Some(0xC040), false)
        );
        assert_eq!(cfg32(&mut nic, 0x3C) & 0xFF, 11);
    }

    #[test]
    fn proxy_on_the_pci_bus() {
        let ram = Ram::new(4096);
        let dev = Rc::new(RefCell::new(E1000::new(
            MAC,
            Box::new(Net::default()),
            Box::new(ram),
        )));
        let mut host = PciHost::new();
        host.add_function(3, 0, Box::new(E1000PciProxy::new(dev.clone())))
            .unwrap();
        let mut b = [0u8; 4];
        host.config_read(0, 3, 0, 0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x100E_8086);
        host.config_write(0, 3, 0, 0x10, &0xFEBC_0000u32.to_le_bytes());
        host.config_write(0, 3, 0, REG_COMMAND, &[0x06, 0x00]);
        let d = dev.borrow().decode();
        assert_eq!((d.mmio, d.bus_master), (Some(0xFEBC_0000), true));
        assert_eq!(host.function(3, 0).unwrap().bars()[0].address, 0xFEBC_0000);
        // Device-side change through the proxy reaches the device at the next access.
        host.function_mut(3, 0)
            .unwrap()
            .config_mut()
            .set_u8(REG_INTERRUPT_LINE, 10);
        host.config_read(0, 3, 0, 0x3C, &mut b);
        assert_eq!(b[0], 10);
        assert_eq!(dev.borrow().config().u8(REG_INTERRUPT_LINE), 10);
        // Registers through the shared handle.
        let mut v = [0u8; 4];
        dev.borrow_mut().read(0, STATUS as u64, &mut v);
        assert_ne!(u32::from_le_bytes(v) & STATUS_LU, 0);
    }

    #[test]
    fn eeprom_checksum_and_eerd() {
        let mut h = H::new();
        let sum = h.nic.eeprom().iter().fold(0u16, |a, &b| a.wrapping_add(b));
        assert_eq!(sum, 0xBABA);
        let read = |h: &mut H, a: u32| {
            h.w(EERD, EERD_START | a << EERD_ADDR_SHIFT);
            let v = h.r(EERD);
            assert_ne!(v & EERD_DONE, 0);
            assert_eq!(v & EERD_START, 0);
            assert_eq!((v >> 8) & 0xFF, a);
            (v >> EERD_DATA_SHIFT) as u16
        };
        assert_eq!(read(&mut h, 0), 0x5452);
        assert_eq!(read(&mut h, 1), 0x1200);
        assert_eq!(read(&mut h, 2), 0x5634);
        assert_eq!(read(&mut h, 0x0D), 0x100E);
        assert_eq!(read(&mut h, 0x0E), 0x8086);
        let total: u16 = (0..64).map(|a| read(&mut h, a)).fold(0, u16::wrapping_add);
        assert_eq!(total, 0xBABA);
        assert_eq!(read(&mut h, 0x80), 0, "beyond the 64-word EEPROM");
        // EECD: present, grant follows request.
        let e = h.r(EECD);
        assert_ne!(e & EECD_PRES, 0);
        assert_eq!(e & EECD_GNT, 0);
        h.w(EECD, EECD_REQ);
        assert_ne!(h.r(EECD) & EECD_GNT, 0);
        assert_eq!(h.nic.mac(), MAC);
    }

    /// Linux e1000_hw.c style Microwire bit-banging on EECD.
    struct Ee {
        eecd: u32,
    }

    impl Ee {
        fn wr(&self, h: &mut H) {
            h.w(EECD, self.eecd);
        }
        fn clock(&mut self, h: &mut H) {
            self.eecd |= EECD_SK;
            self.wr(h);
            self.eecd &= !EECD_SK;
            self.wr(h);
        }
        fn acquire(h: &mut H) -> Ee {
            let mut e = Ee { eecd: h.r(EECD) };
            e.eecd |= EECD_REQ;
            e.wr(h);
            assert_ne!(h.r(EECD) & EECD_GNT, 0);
            e.eecd &= !(EECD_DI | EECD_SK);
            e.wr(h);
            e.eecd |= EECD_CS;
            e.wr(h);
            e
        }
        fn out(&mut self, h: &mut H, data: u16, count: u32) {
            self.eecd &= !EECD_DO;
            for i in (0..count).rev() {
                self.eecd &= !EECD_DI;
                if data >> i & 1 != 0 {
                    self.eecd |= EECD_DI;
                }
                self.wr(h);
                self.clock(h);
            }
            self.eecd &= !EECD_DI;
            self.wr(h);
        }
        fn input(&mut self, h: &mut H) -> u16 {
            self.eecd = h.r(EECD) & !(EECD_DO | EECD_DI);
            let mut d = 0u16;
            for _ in 0..16 {
                d <<= 1;
                self.eecd |= EECD_SK;
                self.wr(h);
                self.eecd = h.r(EECD) & !EECD_DI;
                if self.eecd & EECD_DO != 0 {
                    d |= 1;
                }
                self.eecd &= !EECD_SK;
                self.wr(h);
            }
            d
        }
        fn standby(&mut self, h: &mut H) {
            self.eecd &= !(EECD_CS | EECD_SK);
            self.wr(h);
            self.eecd |= EECD_SK;
            self.wr(h);
            self.eecd |= EECD_CS;
            self.wr(h);
            self.eecd &= !EECD_SK;
            self.wr(h);
        }
        fn release(mut self, h: &mut H) {
            self.eecd &= !(EECD_CS | EECD_DI);
            self.wr(h);
            self.clock(h);
            self.eecd &= !EECD_REQ;
            self.wr(h);
        }
    }

    fn ee_read(h: &mut H, addr: u16) -> u16 {
        let mut e = Ee::acquire(h);
        e.out(h, 0b110, 3);
        e.out(h, addr, 6);
        let v = e.input(h);
        e.standby(h);
        e.release(h);
        v
    }

    fn ee_write(h: &mut H, addr: u16, v: u16, enable: bool) {
        let mut e = Ee::acquire(h);
        if enable {
            e.out(h, 0b10011, 5);
            e.out(h, 0, 4);
            e.standby(h);
        }
        e.out(h, 0b101, 3);
        e.out(h, addr, 6);
        e.out(h, v, 16);
        e.standby(h);
        assert_ne!(h.r(EECD) & EECD_DO, 0, "ready");
        e.standby(h);
        e.out(h, 0b10000, 5);
        e.out(h, 0, 4);
        e.release(h);
    }

    #[test]
    fn eeprom_microwire_bit_banging() {
        let mut h = H::new();
        let image = *h.nic.eeprom();
        for a in 0..64u16 {
            assert_eq!(ee_read(&mut h, a), image[a as usize], "word {a:#x}");
        }
        // Several words in one read command (sequential read).
        let mut e = Ee::acquire(&mut h);
        e.out(&mut h, 0b110, 3);
        e.out(&mut h, 0x3E, 6);
        assert_eq!(e.input(&mut h), image[0x3E]);
        assert_eq!(e.input(&mut h), image[0x3F]);
        assert_eq!(e.input(&mut h), image[0x00], "wraps around");
        e.release(&mut h);
        // Writes need EWEN.
        ee_write(&mut h, 0x30, 0x1234, false);
        assert_eq!(ee_read(&mut h, 0x30), 0xFFFF);
        ee_write(&mut h, 0x30, 0x1234, true);
        assert_eq!(ee_read(&mut h, 0x30), 0x1234);
        assert_eq!(h.nic.eeprom()[0x30], 0x1234);
        // EWDS was sent: the next write without EWEN is refused.
        ee_write(&mut h, 0x30, 0x5678, false);
        assert_eq!(ee_read(&mut h, 0x30), 0x1234);
    }

    #[test]
    fn mdic_phy_registers() {
        let mut h = H::new();
        let rd = |reg: u32| MDIC_OP_READ | PHY_ADDRESS << MDIC_PHY_SHIFT | reg << MDIC_REG_SHIFT;
        let v = h.mdic(rd(2));
        assert_ne!(v & MDIC_READY, 0);
        assert_eq!(v & MDIC_ERROR, 0);
        assert_eq!(v & 0xFFFF, 0x0141);
        assert_eq!(h.mdic(rd(3)) & 0xFFFF, 0x0C20);
        let st = h.mdic(rd(1)) & 0xFFFF;
        assert_eq!(st & 0x24, 0x24, "link up, auto-negotiation complete");
        assert_eq!(st, 0x796D);
        assert_eq!(h.mdic(rd(0)) & 0xFFFF, 0x1140);
        assert_eq!(h.mdic(rd(4)) & 0xFFFF, 0x0DE1);
        assert_eq!(h.mdic(rd(5)) & 0xFFFF, 0x45E1);
        assert_eq!(h.mdic(rd(9)) & 0xFFFF, 0x0300);
        assert_eq!(h.mdic(rd(10)) & 0xFFFF, 0x3C00);
        assert_eq!(h.mdic(rd(17)) & 0xFFFF, 0xAC00);
        // Writes: advertisement is writable, IDs are not; reset/restart self-clear.
        let wr = |reg: u32, d: u32| {
            MDIC_OP_WRITE | PHY_ADDRESS << MDIC_PHY_SHIFT | reg << MDIC_REG_SHIFT | d
        };
        assert_ne!(h.mdic(wr(4, 0x01E1)) & MDIC_READY, 0);
        assert_eq!(h.mdic(rd(4)) & 0xFFFF, 0x01E1);
        h.mdic(wr(2, 0));
        assert_eq!(h.mdic(rd(2)) & 0xFFFF, 0x0141);
        h.mdic(wr(0, 0x9340));
        assert_eq!(h.mdic(rd(0)) & 0xFFFF, 0x1140);
        // Another PHY address: error.
        let v = h.mdic(MDIC_OP_READ | 2 << MDIC_PHY_SHIFT | 1 << MDIC_REG_SHIFT);
        assert_ne!(v & MDIC_ERROR, 0);
        assert_ne!(v & MDIC_READY, 0);
        // Completion interrupt.
        h.w(IMS, ICR_MDAC);
        h.mdic(rd(1) | MDIC_INT_EN);
        assert!(h.nic.irq_level());
        assert_eq!(h.r(ICR), ICR_MDAC);
        // Cable pulled: STATUS.LU and PHY link bits drop, LSC is raised.
        assert_ne!(h.r(STATUS) & STATUS_LU, 0);
        assert_eq!(h.r(STATUS) & (STATUS_FD | STATUS_SPEED_1000), 0x81);
        h.nic.set_link_up(false);
        assert_eq!(h.r(STATUS) & STATUS_LU, 0);
        assert_eq!(h.mdic(rd(1)) & 0x24, 0);
        assert_ne!(h.r(ICR) & ICR_LSC, 0);
        // PHY reset through CTRL.PHY_RST restores defaults.
        h.nic.set_link_up(true);
        let ctrl = h.r(CTRL);
        h.w(CTRL, ctrl | CTRL_PHY_RST);
        h.w(CTRL, ctrl);
        assert_eq!(h.mdic(rd(4)) & 0xFFFF, 0x0DE1);
    }

    #[test]
    fn icr_ims_imc_and_irq_level() {
        let mut h = H::new();
        assert!(!h.nic.irq_level());
        h.w(ICS, ICR_TXDW | ICR_LSC);
        assert!(!h.nic.irq_level(), "masked");
        assert_eq!(
            h.r(ICS),
            ICR_TXDW | ICR_LSC,
            "ICS reads ICR without clearing"
        );
        h.w(IMS, ICR_LSC);
        assert!(h.nic.irq_level());
        assert_eq!(h.r(IMS), ICR_LSC);
        h.w(IMC, ICR_LSC);
        assert!(!h.nic.irq_level());
        assert_eq!(h.r(IMS), 0);
        assert_eq!(h.r(IMC), 0);
        h.w(IMS, ICR_TXDW | ICR_RXT0);
        assert!(h.nic.irq_level());
        // PCI Interrupt Disable masks the pin.
        h.nic.config_write(REG_COMMAND, &[0x07, 0x04]);
        assert!(!h.nic.irq_level());
        let mut st = [0u8; 2];
        h.nic.config_read(REG_STATUS, &mut st);
        assert_ne!(st[0] & 0x08, 0, "Interrupt Status");
        h.nic.config_write(REG_COMMAND, &[0x07, 0x00]);
        assert!(h.nic.irq_level());
        // Read-to-clear.
        assert_eq!(h.r(ICR), ICR_TXDW | ICR_LSC);
        assert!(!h.nic.irq_level());
        assert_eq!(h.r(ICR), 0);
        // Write-1-to-clear, byte access to ICS.
        h.nic.write(h.t, ICS as u64, &[ICR_RXT0 as u8]);
        assert!(h.nic.irq_level());
        h.w(ICR, ICR_TXDW);
        assert!(h.nic.irq_level());
        h.w(ICR, ICR_RXT0);
        assert!(!h.nic.irq_level());
        // Reserved register reads 0; IAM does not exist.
        assert_eq!(h.r(0xE0), 0);
        assert_eq!(h.r(0x0004), 0);
        // Out of the window: all ones.
        let mut b = [0u8; 4];
        h.nic.read(0, MMIO_SIZE, &mut b);
        assert_eq!(b, [0xFF; 4]);
    }

    #[test]
    fn itr_throttles_interrupt_assertion() {
        let mut h = H::new();
        h.w(ITR, 100); // 25.6 us
        h.w(IMS, ICR_RXT0);
        h.w(ICS, ICR_RXT0);
        assert!(h.nic.irq_level(), "first assertion is immediate");
        let t0 = h.t;
        assert_eq!(h.r(ICR), ICR_RXT0);
        assert!(!h.nic.irq_level());
        h.t = t0 + 1_000;
        h.w(ICS, ICR_RXT0);
        assert!(!h.nic.irq_level(), "inside the throttling window");
        assert_eq!(h.nic.next_deadline(), Some(t0 + 25_600));
        h.nic.tick(t0 + 25_599);
        assert!(!h.nic.irq_level());
        h.nic.tick(t0 + 25_600);
        assert!(h.nic.irq_level());
        assert_eq!(h.nic.next_deadline(), None);
        // The level stays while the cause stays.
        h.t = t0 + 30_000;
        h.w(ICS, ICR_RXT0);
        assert!(h.nic.irq_level());
        // A cause cleared inside the window needs no deadline.
        h.t = t0 + 30_100;
        h.r(ICR);
        h.w(ICS, ICR_RXT0);
        assert!(!h.nic.irq_level());
        assert!(h.nic.next_deadline().is_some());
        h.w(IMC, ICR_RXT0);
        assert_eq!(h.nic.next_deadline(), None);
        // ITR = 0: no throttling.
        h.w(ITR, 0);
        h.t = t0 + 200_000;
        h.w(IMS, ICR_RXT0);
        assert!(h.nic.irq_level());
        h.r(ICR);
        h.t += 1;
        h.w(ICS, ICR_RXT0);
        assert!(h.nic.irq_level());
    }

    #[test]
    fn rx_ring_wraparound_with_eop_and_dd() {
        let mut h = H::new();
        h.w(IMS, ICR_RXT0);
        h.rx_setup(8, 5, 3, RCTL_EN | RCTL_BAM | RCTL_SECRC);
        let frames: Vec<Vec<u8>> = (0..4)
            .map(|i| eth(MAC, PEER, 0x0800, &payload(100 + 50 * i)))
            .collect();
        h.inject(frames[0].clone());
        assert_eq!(h.r(ICR) & (ICR_RXT0 | ICR_RXDMT0), ICR_RXT0, "5 free left");
        for f in &frames[1..] {
            h.inject(f.clone());
        }
        for (k, idx) in [5u64, 6, 7, 0].into_iter().enumerate() {
            let (len, _, st, err, _) = h.rxd(idx);
            assert_eq!(len as usize, frames[k].len());
            assert_eq!(
                st & (RXD_STAT_DD | RXD_STAT_EOP),
                RXD_STAT_DD | RXD_STAT_EOP
            );
            assert_eq!(err, 0);
            assert_eq!(h.rx_buf(idx, frames[k].len()), frames[k]);
        }
        assert_eq!(h.r(RDH), 1);
        let icr = h.r(ICR);
        assert_eq!(icr & (ICR_RXT0 | ICR_RXDMT0), ICR_RXT0 | ICR_RXDMT0);
        assert_eq!(h.r(GPRC), 4);
        assert_eq!(h.r(GPRC), 0, "read-to-clear");
        assert!(h.net.0.borrow().polls >= 4);
        // Two more fill the ring up to RDT: the next one waits.
        h.inject(frames[0].clone());
        h.inject(frames[1].clone());
        assert_eq!(h.r(RDH), 3);
        h.inject(frames[2].clone());
        assert_eq!(h.nic.rx_queue_len(), 1);
        assert_eq!(h.r(RNBC), 1);
        h.w(RDT, 4);
        assert_eq!(h.nic.rx_queue_len(), 0);
        assert_eq!(h.r(RDH), 4);
        assert_eq!(h.rx_buf(3, frames[2].len()), frames[2]);
    }

    #[test]
    fn rx_fcs_and_short_frame_padding() {
        assert_eq!(ethernet_fcs(b"123456789"), 0xCBF4_3926);
        let mut h = H::new();
        h.rx_setup(8, 0, 7, RCTL_EN | RCTL_BAM);
        let f = eth(BCAST, PEER, 0x0806, &[1u8; 28]); // 42-byte ARP
        h.inject(f.clone());
        let (len, _, st, _, _) = h.rxd(0);
        assert_eq!(len, 64, "padded to 60 + FCS");
        assert_ne!(st & RXD_STAT_EOP, 0);
        let got = h.rx_buf(0, 64);
        let mut padded = f.clone();
        padded.resize(60, 0);
        assert_eq!(&got[..60], &padded[..]);
        assert_eq!(&got[60..], &ethernet_fcs(&padded).to_le_bytes());
        assert_eq!(h.r(BPRC), 1);
        assert_eq!(h.r(PRC64), 1);
        assert_eq!(h.r(GORCL), 64);
        assert_eq!(h.r(GORCL), 64, "low half does not clear");
        assert_eq!(h.r(GORCH), 0);
        assert_eq!(h.r(GORCL), 0, "high half read clears both");
    }

    #[test]
    fn rx_frame_spanning_descriptors_and_long_packets() {
        let mut h = H::new();
        // BSIZE = 11b: 256-byte buffers.
        h.rx_setup(8, 0, 7, RCTL_EN | RCTL_SECRC | 3 << RCTL_BSIZE_SHIFT);
        let f = eth(MAC, PEER, 0x0800, &payload(586)); // 600 bytes
        h.inject(f.clone());
        let lens: Vec<_> = (0..3).map(|i| h.rxd(i)).collect();
        assert_eq!(lens[0].0, 256);
        assert_eq!(lens[1].0, 256);
        assert_eq!(lens[2].0, 88);
        assert_eq!(lens[0].2, RXD_STAT_DD);
        assert_eq!(lens[1].2, RXD_STAT_DD);
        assert_eq!(
            lens[2].2 & (RXD_STAT_DD | RXD_STAT_EOP),
            RXD_STAT_DD | RXD_STAT_EOP
        );
        let mut got = h.rx_buf(0, 256);
        got.extend(h.rx_buf(1, 256));
        got.extend(h.rx_buf(2, 88));
        assert_eq!(got, f);
        assert_eq!(h.r(RDH), 3);
        // A 1600-byte frame: dropped without LPE, 16 KiB buffers with LPE and BSEX.
        let long = eth(MAC, PEER, 0x0800, &payload(1586));
        h.inject(long.clone());
        assert_eq!(h.r(RDH), 3);
        assert_eq!(h.r(ROC), 1);
        // Exactly 1518 + FCS is accepted (six 256-byte buffers, wrapping).
        h.w(RDT, 2);
        h.inject(eth(MAC, PEER, 0x0800, &payload(1504)));
        assert_eq!(h.r(RDH), 1, "6 buffers of 256 bytes (wrapped)");
        h.w(
            RCTL,
            RCTL_EN | RCTL_SECRC | RCTL_LPE | RCTL_BSEX | 1 << RCTL_BSIZE_SHIFT,
        );
        h.inject(long.clone());
        assert_eq!(h.r(RDH), 2);
        assert_eq!(h.rxd(1).0 as usize, long.len());
    }

    #[test]
    fn rx_address_filtering() {
        let mut h = H::new();
        h.rx_setup(64, 0, 63, RCTL_EN | RCTL_SECRC);
        let delivered = |h: &mut H, dst: [u8; 6]| {
            let before = h.r(RDH);
            h.inject(eth(dst, PEER, 0x0800, &payload(50)));
            h.r(RDH) != before
        };
        let other = [0x52, 0x54, 0x00, 0xAA, 0xBB, 0xCC];
        let mcast = [0x01, 0x00, 0x5E, 0x00, 0x00, 0xFB];
        assert!(
            delivered(&mut h, MAC),
            "own address (RAL0/RAH0 from EEPROM)"
        );
        assert!(!delivered(&mut h, other));
        assert!(!delivered(&mut h, BCAST), "BAM clear");
        assert!(!delivered(&mut h, mcast));
        h.w(RCTL, RCTL_EN | RCTL_SECRC | RCTL_BAM);
        assert!(delivered(&mut h, BCAST));
        // MTA, MO = 00: hash = DA[47:36].
        let hash = (mcast[4] >> 4) as u32 | (mcast[5] as u32) << 4;
        h.w(MTA + 4 * (hash >> 5), 1 << (hash & 31));
        assert!(delivered(&mut h, mcast));
        assert!(!delivered(&mut h, [0x01, 0x00, 0x5E, 0x00, 0x00, 0x01]));
        // MO = 11: bits 43:32 select another bit.
        h.w(RCTL, RCTL_EN | RCTL_SECRC | 3 << RCTL_MO_SHIFT);
        assert!(!delivered(&mut h, mcast));
        let hash3 = mcast[4] as u32 | (mcast[5] as u32 & 0xF) << 8;
        h.w(MTA + 4 * (hash3 >> 5), 1 << (hash3 & 31));
        assert!(delivered(&mut h, mcast));
        h.w(RCTL, RCTL_EN | RCTL_SECRC | RCTL_MPE);
        assert!(delivered(&mut h, [0x33, 0x33, 0, 0, 0, 1]));
        assert!(!delivered(&mut h, other));
        h.w(RCTL, RCTL_EN | RCTL_SECRC | RCTL_UPE);
        assert!(delivered(&mut h, other));
        assert!(!delivered(&mut h, [0x33, 0x33, 0, 0, 0, 1]));
        // Second exact filter; AV clear disables it.
        h.w(RCTL, RCTL_EN | RCTL_SECRC);
        h.w(RAL0 + 8, 0xAA00_5452);
        h.w(RAH0 + 8, 0xCCBB);
        assert!(!delivered(&mut h, other));
        h.w(RAH0 + 8, 0xCCBB | RAH_AV);
        assert!(delivered(&mut h, other));
        let rah = h.r(RAH0);
        h.w(RAH0, rah & !RAH_AV);
        assert!(!delivered(&mut h, MAC));
        // Receiver disabled: nothing.
        h.w(RCTL, RCTL_UPE);
        assert!(!delivered(&mut h, MAC));
    }

    #[test]
    fn rx_queue_overrun_sets_rxo_and_mpc() {
        let mut h = H::new();
        h.w(IMS, ICR_RXO | ICR_RXT0);
        h.rx_setup(8, 0, 0, RCTL_EN | RCTL_SECRC);
        let f = eth(MAC, PEER, 0x0800, &payload(100));
        for _ in 0..RX_QUEUE_FRAMES {
            h.inject(f.clone());
        }
        assert_eq!(h.nic.rx_queue_len(), RX_QUEUE_FRAMES);
        assert!(!h.nic.irq_level());
        assert_eq!(
            h.r(RNBC),
            1,
            "the first one found no buffers; the rest queued behind it"
        );
        h.inject(f.clone());
        assert_eq!(h.r(MPC), 1);
        assert_eq!(h.r(ICR), ICR_RXO);
        // Descriptors arrive: the queue drains into the ring.
        h.w(RDT, 7);
        assert_eq!(h.nic.rx_queue_len(), RX_QUEUE_FRAMES - 7);
        assert_eq!(h.r(RDH), 7);
        assert_ne!(h.r(ICR) & ICR_RXT0, 0);
        // Disabling the receiver flushes the packet buffer.
        h.w(RCTL, 0);
        assert_eq!(h.nic.rx_queue_len(), 0);
    }

    #[test]
    fn rx_checksum_offload_and_vlan_strip() {
        let mut h = H::new();
        h.rx_setup(16, 0, 15, RCTL_EN | RCTL_SECRC);
        let good = tcp_frame(MAC, &payload(300), 77, 0x18, 1);
        assert!(ip_ok(&good) && l4_ok(&good));
        h.inject(good.clone());
        let (_, csum, st, err, _) = h.rxd(0);
        assert_eq!(
            st & (RXD_STAT_IPCS | RXD_STAT_TCPCS | RXD_STAT_IXSM),
            RXD_STAT_IPCS | RXD_STAT_TCPCS
        );
        assert_eq!(err, 0);
        assert_eq!(csum, !inet_csum(&good), "packet checksum from PCSS = 0");
        let mut bad = good.clone();
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        h.inject(bad);
        let (_, _, st, err, _) = h.rxd(1);
        assert_ne!(st & RXD_STAT_TCPCS, 0);
        assert_eq!(err, RXD_ERR_TCPE);
        let mut badip = good.clone();
        badip[14 + 8] = 1; // TTL changed, header checksum stale
        h.inject(badip);
        assert_eq!(h.rxd(2).3 & RXD_ERR_IPE, RXD_ERR_IPE);
        // UDP without checksum.
        let mut udp = vec![0u8; 8 + 20];
        udp[0..2].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&28u16.to_be_bytes());
        let mut body = ipv4(48, 9, 17).to_vec();
        body.extend(udp);
        h.inject(eth(MAC, PEER, 0x0800, &body));
        let (_, _, st, err, _) = h.rxd(3);
        assert_eq!(st & RXD_STAT_TCPCS, RXD_STAT_TCPCS);
        assert_eq!(err, 0);
        // Offloads off: IXSM.
        h.w(RXCSUM, 0);
        h.inject(good.clone());
        assert_eq!(h.rxd(4).2 & (RXD_STAT_IXSM | RXD_STAT_TCPCS), RXD_STAT_IXSM);
        // VLAN: filter and strip.
        h.w(RXCSUM, RXCSUM_TUOFL | RXCSUM_IPOFL);
        let mut tagged = good[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x20, 0x05]); // PCP 1, VID 5
        tagged.extend_from_slice(&good[12..]);
        h.w(RCTL, RCTL_EN | RCTL_SECRC | RCTL_VFE);
        h.inject(tagged.clone());
        assert_eq!(h.r(RDH), 5, "VID 5 not in VFTA");
        h.w(VFTA, 1 << 5);
        let ctrl = h.r(CTRL);
        h.w(CTRL, ctrl | CTRL_VME);
        h.inject(tagged.clone());
        let (len, _, st, err, special) = h.rxd(5);
        assert_eq!(len as usize, good.len());
        assert_eq!(st & RXD_STAT_VP, RXD_STAT_VP);
        assert_eq!(st & RXD_STAT_TCPCS, RXD_STAT_TCPCS);
        assert_eq!(err, 0);
        assert_eq!(special, 0x2005);
        assert_eq!(h.rx_buf(5, good.len()), good);
    }

    #[test]
    fn tx_legacy_descriptors() {
        let mut h = H::new();
        h.w(IMS, ICR_TXDW);
        h.tx_setup(8, 0);
        let f = eth(PEER, MAC, 0x0800, &payload(200));
        h.ram.put(TX_BUFS, &f[..100]);
        h.ram.put(TX_BUFS + 0x1000, &f[100..]);
        h.put_txd(0, legacy(TX_BUFS, 100, TXD_CMD_IFCS));
        h.put_txd(
            1,
            legacy(
                TX_BUFS + 0x1000,
                114,
                TXD_CMD_EOP | TXD_CMD_IFCS | TXD_CMD_RS,
            ),
        );
        // A short frame, padded by TCTL.PSP.
        let short = eth(BCAST, MAC, 0x0806, &[7u8; 28]);
        h.ram.put(TX_BUFS + 0x2000, &short);
        h.put_txd(2, legacy(TX_BUFS + 0x2000, 42, TXD_CMD_EOP | TXD_CMD_RS));
        h.w(TDT, 3);
        let sent = h.sent();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], f);
        assert_eq!(sent[1].len(), 60);
        assert_eq!(&sent[1][..42], &short[..]);
        assert_eq!(h.r(TDH), 3);
        assert_eq!(h.txd_status(0) & TXD_STAT_DD, 0, "no RS, no write-back");
        assert_eq!(h.txd_status(1) & TXD_STAT_DD, TXD_STAT_DD);
        assert_eq!(h.txd_status(2) & TXD_STAT_DD, TXD_STAT_DD);
        assert!(h.nic.irq_level());
        assert_eq!(h.r(ICR), ICR_TXDW | ICR_TXQE);
        assert_eq!(h.r(GPTC), 2);
        assert_eq!(h.r(TPT), 2);
        assert_eq!(h.r(BPTC), 1);
        assert_eq!(h.r(GOTCL), (214 + 4 + 64) as u32);
        // Legacy checksum insertion (IC): CSS = 14, CSO = 14 + 10 (an IPv4 header checksum).
        let mut pkt = tcp_frame(PEER, &payload(10), 1, 0x10, 3);
        pkt[24] = 0;
        pkt[25] = 0;
        h.ram.put(TX_BUFS, &pkt);
        let mut d = legacy(
            TX_BUFS,
            pkt.len() as u16,
            TXD_CMD_EOP | TXD_CMD_IC_TSE | TXD_CMD_RS,
        );
        d[10] = 24; // CSO
        d[13] = 14; // CSS
                    // Limit the sum to the IP header: make the packet an IP header only.
        let iponly = &pkt[..34];
        h.ram.put(TX_BUFS, iponly);
        d[8..10].copy_from_slice(&34u16.to_le_bytes());
        h.put_txd(3, d);
        h.w(TDT, 4);
        let sent = h.sent();
        assert_eq!(sent.len(), 1);
        assert!(ip_ok(&sent[0]));
        // Transmit disabled: nothing happens until TCTL.EN.
        h.w(TCTL, 0);
        h.ram.put(TX_BUFS, &f);
        h.put_txd(4, legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP | TXD_CMD_RS));
        h.w(TDT, 5);
        assert!(h.sent().is_empty());
        h.w(TCTL, TCTL_EN);
        assert_eq!(h.sent(), vec![f]);
    }

    #[test]
    fn tx_context_descriptor_checksum_offload() {
        let mut h = H::new();
        h.tx_setup(16, 0);
        // UDP over IPv4, the way Linux hands it over: IP checksum 0 (IXSM), UDP checksum
        // field = pseudo-header sum including the length (TXSM, CHECKSUM_PARTIAL).
        let data = payload(333);
        let mut udp = vec![0u8; 8];
        udp[0..2].copy_from_slice(&5000u16.to_be_bytes());
        udp[2..4].copy_from_slice(&53u16.to_be_bytes());
        udp[4..6].copy_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&data);
        let mut ip = ipv4(20 + udp.len(), 0x4242, 17);
        ip[10] = 0;
        ip[11] = 0;
        let mut pseudo = ip[12..20].to_vec();
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
        let psum = !inet_csum(&pseudo);
        udp[6..8].copy_from_slice(&psum.to_be_bytes());
        let mut body = ip.to_vec();
        body.extend_from_slice(&udp);
        let f = eth(PEER, MAC, 0x0800, &body);
        h.ram.put(TX_BUFS, &f[..42]);
        h.ram.put(TX_BUFS + 0x1000, &f[42..]);
        h.put_txd(
            0,
            context(14, 24, 33, 34, 40, 0, 0, TXD_TUCMD_IP | TXD_CMD_RS, 0, 0),
        );
        h.put_txd(
            1,
            data_desc(TX_BUFS, 42, 0, TXD_POPTS_IXSM | TXD_POPTS_TXSM),
        );
        h.put_txd(
            2,
            data_desc(
                TX_BUFS + 0x1000,
                (f.len() - 42) as u32,
                TXD_CMD_EOP | TXD_CMD_RS,
                0,
            ),
        );
        h.w(TDT, 3);
        let sent = h.sent();
        assert_eq!(sent.len(), 1);
        let s = &sent[0];
        assert_eq!(s.len(), f.len());
        assert!(ip_ok(s), "IP header checksum inserted");
        assert!(l4_ok(s), "UDP checksum inserted");
        assert_eq!(&s[42..], &f[42..]);
        assert_eq!(
            h.txd_status(0) & TXD_STAT_DD,
            TXD_STAT_DD,
            "context descriptor with RS"
        );
        assert_eq!(h.txd_status(2) & TXD_STAT_DD, TXD_STAT_DD);
        // TCP with only TXSM: the IP header is left alone.
        let mut t = tcp_frame(PEER, &payload(1000), 5, 0x18, 7);
        let tcp_len = t.len() - 34;
        let mut pseudo = t[26..34].to_vec();
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
        let psum = !inet_csum(&pseudo);
        t[50..52].copy_from_slice(&psum.to_be_bytes());
        assert!(!l4_ok(&t));
        h.ram.put(TX_BUFS, &t);
        h.put_txd(3, context(0, 0, 0, 34, 50, 0, 0, TXD_TUCMD_TCP, 0, 0));
        h.put_txd(
            4,
            data_desc(
                TX_BUFS,
                t.len() as u32,
                TXD_CMD_EOP | TXD_CMD_RS,
                TXD_POPTS_TXSM,
            ),
        );
        h.w(TDT, 5);
        let sent = h.sent();
        assert!(ip_ok(&sent[0]) && l4_ok(&sent[0]));
        assert_eq!(&sent[0][..50], &t[..50]);
    }

    /// Builds the TSO input Linux's e1000_tso() produces: IPv4 total length and header
    /// checksum 0, TCP checksum = pseudo-header sum without length.
    fn tso_input(data: &[u8], seq: u32, flags: u8, id: u16) -> Vec<u8> {
        let mut t = tcp_frame(PEER, data, seq, flags, id);
        t[16] = 0;
        t[17] = 0;
        t[24] = 0;
        t[25] = 0;
        let mut pseudo = t[26..34].to_vec();
        pseudo.extend_from_slice(&[0, 6, 0, 0]);
        let psum = !inet_csum(&pseudo);
        t[50..52].copy_from_slice(&psum.to_be_bytes());
        t
    }

    #[test]
    fn tso_splits_3000_byte_tcp_payload() {
        let mut h = H::new();
        h.w(IMS, ICR_TXDW);
        h.tx_setup(16, 0);
        let data = payload(3000);
        let seq = 0xFFFF_F000; // wraps during the segments
        let t = tso_input(&data, seq, 0x19, 0x1234); // FIN | PSH | ACK
        h.ram.put(TX_BUFS, &t[..54]);
        h.ram.put(TX_BUFS + 0x1000, &t[54..54 + 1000]);
        h.ram.put(TX_BUFS + 0x2000, &t[54 + 1000..]);
        let tse = TXD_CMD_IC_TSE;
        h.put_txd(
            0,
            context(
                14,
                24,
                33,
                34,
                50,
                0,
                3000,
                TXD_TUCMD_TCP | TXD_TUCMD_IP | tse,
                54,
                1460,
            ),
        );
        let popts = TXD_POPTS_IXSM | TXD_POPTS_TXSM;
        h.put_txd(1, data_desc(TX_BUFS, 54, tse, popts));
        h.put_txd(2, data_desc(TX_BUFS + 0x1000, 1000, tse, popts));
        h.put_txd(
            3,
            data_desc(
                TX_BUFS + 0x2000,
                2000,
                tse | TXD_CMD_EOP | TXD_CMD_RS,
                popts,
            ),
        );
        h.w(TDT, 4);
        let sent = h.sent();
        assert_eq!(sent.len(), 3);
        let sizes = [1460usize, 1460, 80];
        let mut off = 0;
        for (i, s) in sent.iter().enumerate() {
            assert_eq!(s.len(), 54 + sizes[i], "segment {i}");
            assert_eq!(&s[..14], &t[..14]);
            assert_eq!(u16::from_be_bytes([s[16], s[17]]) as usize, 40 + sizes[i]);
            assert_eq!(u16::from_be_bytes([s[18], s[19]]), 0x1234 + i as u16);
            assert!(ip_ok(s), "IP checksum of segment {i}");
            assert!(l4_ok(s), "TCP checksum of segment {i}");
            let sq = u32::from_be_bytes([s[38], s[39], s[40], s[41]]);
            assert_eq!(sq, seq.wrapping_add(off as u32));
            let flags = s[47];
            if i < 2 {
                assert_eq!(flags, 0x10, "FIN/PSH cleared in segment {i}");
            } else {
                assert_eq!(flags, 0x19, "FIN/PSH kept in the last segment");
            }
            assert_eq!(&s[54..], &data[off..off + sizes[i]]);
            off += sizes[i];
        }
        assert_eq!(h.r(TSCTC), 1);
        assert_eq!(h.r(GPTC), 3);
        assert_eq!(h.txd_status(3) & TXD_STAT_DD, TXD_STAT_DD);
        assert_eq!(h.r(ICR), ICR_TXDW | ICR_TXQE);
        // A later non-TSO packet uses the other context (none set: no offload).
        let plain = eth(PEER, MAC, 0x0800, &payload(80));
        h.ram.put(TX_BUFS, &plain);
        h.put_txd(4, data_desc(TX_BUFS, plain.len() as u32, TXD_CMD_EOP, 0));
        h.w(TDT, 5);
        assert_eq!(h.sent(), vec![plain]);
    }

    #[test]
    fn tso_ipv6_tcp() {
        let mut h = H::new();
        h.tx_setup(16, 0);
        let data = payload(2500);
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        ip6.extend_from_slice(&[0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip6.extend_from_slice(&[0xFE, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        let mut tcp = vec![0u8; 20];
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18;
        // Pseudo-header sum without length.
        let mut pseudo = ip6[8..40].to_vec();
        pseudo.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 6]);
        tcp[16..18].copy_from_slice(&(!inet_csum(&pseudo)).to_be_bytes());
        let mut body = ip6.clone();
        body.extend_from_slice(&tcp);
        body.extend_from_slice(&data);
        let f = eth(PEER, MAC, 0x86DD, &body);
        h.ram.put(TX_BUFS, &f);
        let tse = TXD_CMD_IC_TSE;
        h.put_txd(
            0,
            context(14, 0, 0, 54, 70, 0, 2500, TXD_TUCMD_TCP | tse, 74, 1440),
        );
        h.put_txd(
            1,
            data_desc(TX_BUFS, f.len() as u32, tse | TXD_CMD_EOP, TXD_POPTS_TXSM),
        );
        h.w(TDT, 2);
        let sent = h.sent();
        assert_eq!(sent.len(), 2);
        for (i, s) in sent.iter().enumerate() {
            let plen = u16::from_be_bytes([s[18], s[19]]) as usize;
            assert_eq!(plen, s.len() - 54, "IPv6 payload length of segment {i}");
            let mut p = s[22..54].to_vec();
            p.extend_from_slice(&(plen as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 6]);
            p.extend_from_slice(&s[54..]);
            assert_eq!(inet_csum(&p), 0, "TCP checksum of segment {i}");
            let sq = u32::from_be_bytes([s[58], s[59], s[60], s[61]]);
            assert_eq!(sq, 1000 + 1440 * i as u32);
        }
        assert_eq!(sent[0][67], 0x10);
        assert_eq!(sent[1][67], 0x18);
    }

    #[test]
    fn tx_ring_wraparound() {
        let mut h = H::new();
        h.tx_setup(8, 6);
        let frames: Vec<Vec<u8>> = (0..4)
            .map(|i| eth(PEER, MAC, 0x0800, &payload(60 + i * 10)))
            .collect();
        for (k, idx) in [6u64, 7, 0, 1].into_iter().enumerate() {
            let a = TX_BUFS + 0x1000 * k as u64;
            h.ram.put(a, &frames[k]);
            h.put_txd(
                idx,
                legacy(a, frames[k].len() as u16, TXD_CMD_EOP | TXD_CMD_RS),
            );
        }
        h.w(TDT, 2);
        assert_eq!(h.sent(), frames);
        assert_eq!(h.r(TDH), 2);
        for idx in [6u64, 7, 0, 1] {
            assert_eq!(h.txd_status(idx) & TXD_STAT_DD, TXD_STAT_DD);
        }
    }

    #[test]
    fn loopback_vlan_insertion_and_software_reset() {
        let mut h = H::new();
        h.rx_setup(8, 0, 7, RCTL_EN | RCTL_SECRC | 1 << 6); // LBM = MAC loopback
        h.tx_setup(8, 0);
        let f = eth(MAC, MAC, 0x0800, &payload(100));
        h.ram.put(TX_BUFS, &f);
        h.put_txd(0, legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP));
        h.w(TDT, 1);
        assert!(h.sent().is_empty());
        assert_eq!(h.r(RDH), 1);
        assert_eq!(h.rx_buf(0, f.len()), f);
        // VLAN insertion with VLE and CTRL.VME.
        h.w(RCTL, 0);
        let ctrl = h.r(CTRL);
        h.w(CTRL, ctrl | CTRL_VME);
        let mut d = legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP | TXD_CMD_VLE);
        d[14..16].copy_from_slice(&0x0123u16.to_le_bytes());
        h.put_txd(1, d);
        h.w(TDT, 2);
        let sent = h.sent();
        assert_eq!(&sent[0][12..16], &[0x81, 0x00, 0x01, 0x23]);
        assert_eq!(&sent[0][16..], &f[12..]);
        // CTRL.RST through the I/O BAR: IOADDR/IODATA.
        h.w(RAL0, 0);
        h.w(IMS, ICR_RXT0);
        h.nic.io_write(0, 0, &STATUS.to_le_bytes());
        let mut v = [0u8; 4];
        h.nic.io_read(0, 4, &mut v);
        assert_eq!(u32::from_le_bytes(v), h.r(STATUS));
        h.nic.io_read(0, 0, &mut v);
        assert_eq!(u32::from_le_bytes(v), STATUS);
        h.nic.io_read(0, 8, &mut v);
        assert_eq!(v, [0xFF; 4]);
        h.nic.io_write(0, 0, &CTRL.to_le_bytes());
        h.nic
            .io_write(0, 4, &(CTRL_DEFAULT | CTRL_RST).to_le_bytes());
        assert_eq!(h.r(CTRL) & CTRL_RST, 0, "self-clearing");
        assert_eq!(h.r(IMS), 0);
        assert_eq!(h.r(TDLEN), 0);
        assert_eq!(h.nic.mac(), MAC, "RAL0/RAH0 reloaded from EEPROM");
        assert_eq!(h.r(RAH0) & RAH_AV, RAH_AV);
        // RDLEN/TDLEN keep 128-byte multiples; heads and tails are 16 bits.
        h.w(RDLEN, 100);
        assert_eq!(h.r(RDLEN), 0);
        h.w(RDLEN, 0x1FF);
        assert_eq!(h.r(RDLEN), 0x180);
        h.w(TDT, 0x12345);
        assert_eq!(h.r(TDT), 0x2345);
    }

    #[test]
    fn bad_descriptors_never_panic() {
        let mut h = H::new();
        let f = eth(MAC, PEER, 0x0800, &payload(100));
        // RX ring outside RAM: the ring stalls, the frame waits.
        h.rx_setup(8, 0, 7, RCTL_EN | RCTL_SECRC);
        h.w(RDBAL, 0xFFF0_0000);
        h.inject(f.clone());
        assert!(h.nic.rx_stalled());
        assert_eq!(h.nic.rx_queue_len(), 1);
        assert_eq!(h.r(RDH), 0);
        // Fixing the base lets it through.
        h.w(RDBAL, RX_RING as u32);
        assert!(!h.nic.rx_stalled());
        h.nic.poll_rx(h.t);
        assert_eq!(h.r(RDH), 1);
        // Ring partly outside RAM (base near the end, 64 entries): stalls at the boundary.
        let base = RAM_SIZE as u64 - 4 * 16;
        for i in 0..4 {
            let mut d = [0u8; 16];
            d[0..8].copy_from_slice(&(RX_BUFS + i * 0x1000).to_le_bytes());
            h.ram.put(base + 16 * i, &d);
        }
        h.w(RDBAL, base as u32);
        h.w(RDLEN, 64 * 16);
        h.w(RDH, 0);
        h.w(RDT, 63);
        for _ in 0..6 {
            h.inject(f.clone());
        }
        assert_eq!(h.r(RDH), 4);
        assert!(h.nic.rx_stalled());
        // 64-bit base overflow.
        h.w(RDBAH, 0xFFFF_FFFF);
        h.w(RDBAL, 0xFFFF_FFF0);
        h.w(RDH, 5);
        h.nic.poll_rx(h.t);
        assert!(h.nic.rx_stalled());
        assert_eq!(h.nic.rx_queue_len(), 2, "frames wait for the ring");
        // Buffer outside RAM: RXE, EOP, descriptor consumed.
        h.w(RCTL, 0);
        assert_eq!(h.nic.rx_queue_len(), 0);
        h.rx_setup(8, 0, 7, 0);
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        h.ram.put(RX_RING, &d);
        h.w(RCTL, RCTL_EN | RCTL_SECRC);
        h.inject(f.clone());
        let (_, _, st, err, _) = h.rxd(0);
        assert_eq!(
            st & (RXD_STAT_DD | RXD_STAT_EOP),
            RXD_STAT_DD | RXD_STAT_EOP
        );
        assert_eq!(err & RXD_ERR_RXE, RXD_ERR_RXE);
        assert_eq!(h.r(RDH), 1);
        // Head or tail beyond the ring: nothing is processed.
        h.w(RDT, 100);
        h.inject(f.clone());
        assert_eq!(h.r(RDH), 1);
        h.w(RDT, 7);
        h.w(RDH, 0xFFFF);
        h.inject(f.clone());
        assert_eq!(h.r(RDH), 0xFFFF);
        assert_eq!(h.nic.rx_queue_len(), 1);
        // Null buffer address: skipped (DD, length 0), frame goes to the next descriptor.
        h.w(RCTL, 0);
        h.rx_setup(8, 0, 7, 0);
        h.ram.put(RX_RING, &[0u8; 16]);
        h.w(RCTL, RCTL_EN | RCTL_SECRC);
        h.inject(f.clone());
        assert_eq!(h.rxd(0).0, 0);
        assert_eq!(h.rxd(0).2, RXD_STAT_DD);
        assert_eq!(h.rxd(1).0 as usize, f.len());
        assert_eq!(h.r(RDH), 2);

        // TX ring outside RAM.
        h.tx_setup(8, 0);
        h.w(TDBAL, 0xFFFF_0000);
        h.w(TDT, 3);
        assert!(h.nic.tx_stalled());
        assert_eq!(h.r(TDH), 0);
        // TX buffer outside RAM: packet dropped, descriptor still completes.
        h.w(TDBAL, TX_RING as u32);
        h.put_txd(0, legacy(0xFFFF_FFFF_0000, 100, TXD_CMD_EOP | TXD_CMD_RS));
        h.put_txd(1, legacy(0, 0, 0));
        h.put_txd(2, legacy(TX_BUFS, 0, TXD_CMD_EOP));
        h.w(TDT, 3);
        assert!(!h.nic.tx_stalled());
        assert_eq!(h.r(TDH), 3);
        assert_eq!(h.txd_status(0) & TXD_STAT_DD, TXD_STAT_DD);
        assert!(h.sent().is_empty());
        // TX tail beyond the ring: nothing.
        h.w(TDT, 0xFFFF);
        assert_eq!(h.r(TDH), 3);
        // A TSO context that cannot work (header longer than the data, MSS 0).
        h.w(TDT, 3);
        h.put_txd(
            3,
            context(
                14,
                24,
                33,
                34,
                50,
                0,
                100,
                TXD_TUCMD_TCP | TXD_CMD_IC_TSE,
                200,
                0,
            ),
        );
        h.ram.put(TX_BUFS, &f);
        h.put_txd(
            4,
            data_desc(TX_BUFS, 100, TXD_CMD_IC_TSE | TXD_CMD_EOP, TXD_POPTS_TXSM),
        );
        h.w(TDT, 5);
        assert!(h.sent().is_empty());
        assert_eq!(h.r(TSCTFC), 1);
        // Huge TDLEN with a ring that ends in RAM's last bytes.
        h.w(TDBAL, (RAM_SIZE - 32) as u32);
        h.w(TDLEN, 0xF_FF80);
        h.w(TDH, 0);
        h.w(TDT, 0xFFF0);
        assert!(h.nic.tx_stalled());
        assert_eq!(h.r(TDH), 2);
        // Bus master disabled: no DMA at all; enabling resumes.
        h.tx_setup(8, 0);
        h.nic.config_write(REG_COMMAND, &[0x03, 0x00]);
        h.ram.put(TX_BUFS, &f);
        h.put_txd(0, legacy(TX_BUFS, f.len() as u16, TXD_CMD_EOP));
        h.w(TDT, 1);
        assert!(h.sent().is_empty());
        h.nic.config_write(REG_COMMAND, &[0x07, 0x00]);
        assert_eq!(h.sent().len(), 1);
    }

    /// Deterministic xorshift generator for the robustness test.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn random_registers_and_descriptors_never_panic() {
        let mut h = H::new();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let hot = [
            CTRL, EECD, EERD, MDIC, ICR, ITR, ICS, IMS, IMC, RCTL, TCTL, RDBAL, RDBAH, RDLEN, RDH,
            RDT, TDBAL, TDBAH, TDLEN, TDH, TDT, RXCSUM, RSRPD, VET, MTA, RAL0, RAH0, GORCH, TPR,
        ];
        let (mut sent, mut rdh_moves, mut last_rdh) = (0usize, 0usize, 0u32);
        for step in 0..20_000u64 {
            h.t += rng.next() % 5000;
            let r = rng.next();
            match r % 8 {
                0 | 1 => {
                    let off = hot[(r >> 8) as usize % hot.len()];
                    let mut v = rng.next() as u32;
                    match off {
                        RDBAL | TDBAL if !v.is_multiple_of(4) => {
                            v = if off == RDBAL { RX_RING } else { TX_RING } as u32
                        }
                        RDBAL | TDBAL => v &= (RAM_SIZE as u32 - 1) | 0x8000_0000,
                        RDLEN | TDLEN if !v.is_multiple_of(4) => v = 64 * 16,
                        RDLEN | TDLEN => v &= 0x7FF,
                        RDH | RDT | TDH | TDT => v %= 72,
                        RCTL | TCTL if !v.is_multiple_of(4) => v |= 2, // mostly enabled
                        CTRL => v &= !CTRL_RST | if step % 997 == 0 { CTRL_RST } else { 0 },
                        _ => {}
                    }
                    h.w(off, v);
                }
                2 => {
                    let off = (rng.next() % MMIO_SIZE) & !3;
                    let len = [1usize, 2, 4, 8][(r >> 8) as usize % 4];
                    let mut b = vec![0u8; len];
                    if r & 0x100 != 0 {
                        h.nic.read(h.t, off + (r >> 20) % 4, &mut b);
                    } else if off as u32 != CTRL {
                        h.nic.write(h.t, off + (r >> 20) % 4, &b);
                    }
                }
                3 => {
                    // Scribble descriptors in both rings.
                    let base = if r & 0x100 != 0 { RX_RING } else { TX_RING };
                    let i = (r >> 9) % 64;
                    let mut d = [0u8; 16];
                    for b in d.iter_mut() {
                        *b = rng.next() as u8;
                    }
                    if r & 0x200 != 0 {
                        let a = rng.next() % (RAM_SIZE as u64 + 0x1000);
                        d[0..8].copy_from_slice(&a.to_le_bytes());
                    }
                    h.ram.put(base + 16 * i, &d);
                }
                4 => {
                    let len = (rng.next() % 2000) as usize;
                    let mut f: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    if len >= 6 && r & 0x100 != 0 {
                        f[..6].copy_from_slice(&MAC);
                    }
                    h.net.0.borrow_mut().incoming.push_back(f);
                    h.nic.poll_rx(h.t);
                }
                5 => {
                    if let Some(d) = h.nic.next_deadline() {
                        h.t = h.t.max(d);
                        h.nic.tick(h.t);
                    }
                }
                6 => {
                    let mut b = [0u8; 4];
                    let o = rng.next() % 12;
                    if r & 0x100 != 0 {
                        h.nic.io_read(h.t, o, &mut b);
                    } else {
                        h.nic
                            .io_write(h.t, o, &(rng.next() as u32 & 0x1_FFFF).to_le_bytes());
                    }
                }
                _ => {
                    let reg = (rng.next() % 64) as u8;
                    h.nic
                        .config_write(reg & !3, &(rng.next() as u32).to_le_bytes());
                    h.nic.config_write(REG_COMMAND, &[0x07, 0x00]);
                    let _ = h.nic.irq_level();
                }
            }
            sent += h.sent().len();
            let rdh = h.nic.reg(RDH);
            if rdh != last_rdh {
                rdh_moves += 1;
                last_rdh = rdh;
            }
        }
        assert!(sent > 0, "the transmit path ran");
        assert!(rdh_moves > 0, "the receive path ran");
    }
}
