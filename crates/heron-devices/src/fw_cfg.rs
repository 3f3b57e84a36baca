//! QEMU's firmware configuration device ("fw_cfg") on its x86 I/O ports, as SeaBIOS (and OVMF,
//! and Linux's `qemu_fw_cfg` driver) use it to learn the machine's RAM size, CPU count, e820
//! map, boot order and ACPI tables.
//!
//! References: QEMU `docs/specs/fw_cfg.rst` (the guest-visible interface), QEMU
//! `hw/nvram/fw_cfg.c` and `include/standard-headers/linux/qemu_fw_cfg.h` (the behaviour
//! modelled here, including the corner cases below), SeaBIOS `src/fw/paravirt.c` (the guest side:
//! `qemu_cfg_detect`, `qemu_cfg_dma_transfer`, `qemu_cfg_init`).
//!
//! # Registers
//!
//! The device occupies I/O ports 0x510 – 0x51B; [`Device`] `offset` = port − 0x510
//! ([`PORT_BASE`]):
//!
//! | offset | port  | access | register |
//! |--------|-------|--------|----------|
//! | 0      | 0x510 | 16-bit write | selector: picks the item to read and rewinds its offset to 0 |
//! | 0, 1   | 0x510, 0x511 | 8-bit read | data: the next byte of the selected item (0 past its end) |
//! | 0, 1   | 0x510, 0x511 | 8-bit write | data write: ignored (QEMU removed it in v2.4) |
//! | 4 – 7  | 0x514 | 32-bit write | DMA address, high half (big-endian) |
//! | 8 – 11 | 0x518 | 32-bit write | DMA address, low half (big-endian); the write starts the transfer |
//! | 4 – 11 | 0x514 – 0x51B | read | the DMA signature `"QEMU CFG"`, byte by byte |
//!
//! Accesses of other sizes or at other offsets read all ones and are ignored when written, as
//! QEMU rejects them. Ports 0x512 and 0x513 are not decoded.
//!
//! # Items
//!
//! An item is a byte string selected by a 16-bit key. Bit 14 of the key
//! ([`FW_CFG_WRITE_CHANNEL`]) is ignored, bit 15 ([`FW_CFG_ARCH_LOCAL`]) selects the
//! architecture-specific keys. The fixed items: [`FW_CFG_SIGNATURE`] (`"QEMU"`), [`FW_CFG_ID`]
//! (feature bits, LE32: 1 = traditional interface, 2 = DMA), [`FW_CFG_UUID`] (16 bytes),
//! [`FW_CFG_RAM_SIZE`] (LE64), [`FW_CFG_NOGRAPHIC`], [`FW_CFG_NB_CPUS`], [`FW_CFG_BOOT_MENU`],
//! [`FW_CFG_MAX_CPUS`] (LE16 each) and [`FW_CFG_FILE_DIR`]. Named files ([`FwCfg::add_file`]) get
//! keys from [`FW_CFG_FILE_FIRST`] up in the byte order of their names, as QEMU assigns them,
//! and are listed in the file directory: a big-endian 32-bit count, then per file a
//! [`FILE_DIR_ENTRY_LEN`]-byte entry { size BE32, select BE16, reserved 16 bits, name\[56\]
//! NUL-padded }. A key that names no item selects an empty item: reads return 0.
//!
//! # DMA
//!
//! Writing the low half of the DMA address makes the device read a 16-byte `FWCfgDmaAccess`
//! { control BE32, length BE32, address BE64 } at that guest-physical address, carry it out at
//! once, and write the control word back: 0 when done, [`DMA_CTL_ERROR`] on failure. Control
//! bits: [`DMA_CTL_SELECT`] (select the key in bits 31–16 first), then one of [`DMA_CTL_READ`]
//! (copy `length` bytes of the item to `address`; past the item's end the rest is filled with
//! zeros), [`DMA_CTL_WRITE`] (always fails here: no item is writable, so SeaBIOS's
//! WRITE_POINTER loader command, which ACPI tables without vmgenid/etc never use, is refused)
//! or [`DMA_CTL_SKIP`] (advance the item offset by `length`). A guest-physical range outside
//! RAM sets [`DMA_CTL_ERROR`]. The DMA address register is cleared after each transfer, so a
//! guest that writes only the low half (SeaBIOS) addresses the first 4 GiB. The interface, and
//! ID bit 1 that advertises it, exist only when the device has a [`DmaMemory`].

use std::collections::BTreeMap;

use crate::{le_value, DmaMemory, Device, Nanos};

/// First I/O port of the device: [`Device`] offsets are port − `PORT_BASE`.
pub const PORT_BASE: u16 = 0x510;
/// Number of I/O ports from [`PORT_BASE`] the machine should route to the device (0x510 – 0x51B).
pub const PORT_COUNT: u16 = 12;
/// Offset of the selector register (port 0x510, 16-bit writes).
pub const OFFSET_SELECTOR: u64 = 0;
/// Offset of the data register (port 0x511, 8-bit reads; port 0x510 reads the same data).
pub const OFFSET_DATA: u64 = 1;
/// Offset of the DMA address register's high half (port 0x514, 32-bit big-endian).
pub const OFFSET_DMA_HIGH: u64 = 4;
/// Offset of the DMA address register's low half (port 0x518, 32-bit big-endian; triggers DMA).
pub const OFFSET_DMA_LOW: u64 = 8;

/// Key: signature, the 4 bytes `"QEMU"`.
pub const FW_CFG_SIGNATURE: u16 = 0x0000;
/// Key: interface feature bits, LE32 ([`FW_CFG_VERSION`], [`FW_CFG_VERSION_DMA`]).
pub const FW_CFG_ID: u16 = 0x0001;
/// Key: the machine's UUID, 16 bytes (SMBIOS type 1).
pub const FW_CFG_UUID: u16 = 0x0002;
/// Key: RAM size in bytes, LE64.
pub const FW_CFG_RAM_SIZE: u16 = 0x0003;
/// Key: LE16, nonzero = no graphics (SeaBIOS then runs its serial console on COM1).
pub const FW_CFG_NOGRAPHIC: u16 = 0x0004;
/// Key: number of CPUs present at boot, LE16.
pub const FW_CFG_NB_CPUS: u16 = 0x0005;
/// Key: LE16, nonzero = show the boot menu (SeaBIOS's "etc/show-boot-menu").
pub const FW_CFG_BOOT_MENU: u16 = 0x000E;
/// Key: maximum number of CPUs, LE16 (SeaBIOS's "etc/max-cpus").
pub const FW_CFG_MAX_CPUS: u16 = 0x000F;
/// Key: the file directory (see the module documentation).
pub const FW_CFG_FILE_DIR: u16 = 0x0019;
/// Key of the first named file.
pub const FW_CFG_FILE_FIRST: u16 = 0x0020;
/// Key bit 14: the historical "write" channel, ignored when selecting.
pub const FW_CFG_WRITE_CHANNEL: u16 = 0x4000;
/// Key bit 15: architecture-local keys (x86: 0x8000 ACPI tables, 0x8001 SMBIOS, 0x8002 IRQ0
/// override, 0x8003 e820 reservations — all legacy; this device leaves them empty).
pub const FW_CFG_ARCH_LOCAL: u16 = 0x8000;
/// One past the highest key a named file can get (keys stay below the write channel bit).
pub const FW_CFG_FILE_END: u16 = FW_CFG_WRITE_CHANNEL;

/// [`FW_CFG_ID`] bit 0: the traditional selector/data interface.
pub const FW_CFG_VERSION: u32 = 1 << 0;
/// [`FW_CFG_ID`] bit 1: the DMA interface.
pub const FW_CFG_VERSION_DMA: u32 = 1 << 1;

/// DMA control bit 0: the transfer failed (set by the device).
pub const DMA_CTL_ERROR: u32 = 1 << 0;
/// DMA control bit 1: read from the item into guest memory.
pub const DMA_CTL_READ: u32 = 1 << 1;
/// DMA control bit 2: skip bytes of the item.
pub const DMA_CTL_SKIP: u32 = 1 << 2;
/// DMA control bit 3: select the key in bits 31–16 before the transfer.
pub const DMA_CTL_SELECT: u32 = 1 << 3;
/// DMA control bit 4: write guest memory into the item.
pub const DMA_CTL_WRITE: u32 = 1 << 4;
/// Size of the `FWCfgDmaAccess` structure in bytes.
pub const DMA_ACCESS_LEN: usize = 16;
/// What the DMA address register reads as: `"QEMU CFG"` (0x51454D5520434647 big-endian).
pub const DMA_SIGNATURE: [u8; 8] = *b"QEMU CFG";

/// Size of a file name field in the file directory, including the terminating NUL.
pub const FILE_NAME_LEN: usize = 56;
/// Size of one file directory entry in bytes.
pub const FILE_DIR_ENTRY_LEN: usize = 64;

/// Bytes of zeros written per step when a DMA read runs past an item's end.
const ZERO_CHUNK: usize = 4096;

/// Errors adding items to [`FwCfg`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FwCfgError {
    /// A file name must be 1 to 55 bytes without NUL.
    #[error("fw_cfg file name {0:?} must be 1 to 55 bytes without NUL")]
    BadName(String),
    /// More files than keys [`FW_CFG_FILE_FIRST`] .. [`FW_CFG_FILE_END`].
    #[error("too many fw_cfg files")]
    TooManyFiles,
    /// Items larger than 4 GiB − 1 cannot be described by the 32-bit size fields.
    #[error("fw_cfg item of {0} bytes is too large")]
    TooLarge(usize),
    /// The key belongs to the device itself (signature, ID, file directory, files).
    #[error("fw_cfg key {0:#06x} is reserved")]
    ReservedKey(u16),
}

/// The fw_cfg device: fixed items, named files, the selected item and offset, and the DMA
/// engine. See the module documentation.
pub struct FwCfg {
    dma: Option<Box<dyn DmaMemory>>,
    /// Fixed items by key (bit 14 cleared), except the signature, ID and file directory.
    items: BTreeMap<u16, Vec<u8>>,
    /// Named files sorted by name; file `i` has key `FW_CFG_FILE_FIRST + i`.
    files: Vec<(String, Vec<u8>)>,
    /// The encoded file directory.
    dir: Vec<u8>,
    /// Selected key (bit 14 cleared).
    selected: u16,
    /// Offset of the next byte of the selected item.
    offset: u32,
    /// DMA address register.
    dma_addr: u64,
}

impl FwCfg {
    /// A device with the DMA interface, transferring through `dma` (guest-physical memory).
    /// RAM size 0, one CPU, graphics on, no boot menu, zero UUID, no files.
    pub fn new(dma: Box<dyn DmaMemory>) -> Self {
        let mut f = Self::without_dma();
        f.dma = Some(dma);
        f
    }

    /// A device with only the selector/data interface ([`FW_CFG_ID`] = 1). Otherwise as
    /// [`FwCfg::new`].
    pub fn without_dma() -> Self {
        let mut items = BTreeMap::new();
        items.insert(FW_CFG_UUID, vec![0; 16]);
        items.insert(FW_CFG_RAM_SIZE, 0u64.to_le_bytes().to_vec());
        items.insert(FW_CFG_NOGRAPHIC, 0u16.to_le_bytes().to_vec());
        items.insert(FW_CFG_NB_CPUS, 1u16.to_le_bytes().to_vec());
        items.insert(FW_CFG_BOOT_MENU, 0u16.to_le_bytes().to_vec());
        items.insert(FW_CFG_MAX_CPUS, 1u16.to_le_bytes().to_vec());
        let mut f = FwCfg { dma: None, items, files: Vec::new(), dir: Vec::new(), selected: 0, offset: 0, dma_addr: 0 };
        f.rebuild_dir();
        f
    }

    /// Attach (or with `None` detach) the guest memory the DMA interface uses; this also sets
    /// or clears [`FW_CFG_VERSION_DMA`] in [`FW_CFG_ID`]. Change it only before the guest runs.
    pub fn set_dma(&mut self, dma: Option<Box<dyn DmaMemory>>) {
        self.dma = dma;
    }

    /// Whether the DMA interface is present.
    pub fn dma_enabled(&self) -> bool {
        self.dma.is_some()
    }

    /// Set [`FW_CFG_RAM_SIZE`]: guest RAM in bytes.
    pub fn set_ram_size(&mut self, bytes: u64) {
        self.items.insert(FW_CFG_RAM_SIZE, bytes.to_le_bytes().to_vec());
    }

    /// Set [`FW_CFG_NB_CPUS`] (CPUs present) and [`FW_CFG_MAX_CPUS`] (at most this many).
    pub fn set_cpus(&mut self, present: u16, max: u16) {
        self.items.insert(FW_CFG_NB_CPUS, present.to_le_bytes().to_vec());
        self.items.insert(FW_CFG_MAX_CPUS, max.max(present).to_le_bytes().to_vec());
    }

    /// Set [`FW_CFG_NOGRAPHIC`]: with `true`, SeaBIOS redirects its console (and int 10h when
    /// there is no VGA ROM) to COM1.
    pub fn set_nographic(&mut self, nographic: bool) {
        self.items.insert(FW_CFG_NOGRAPHIC, u16::from(nographic).to_le_bytes().to_vec());
    }

    /// Set [`FW_CFG_BOOT_MENU`]: with `false` SeaBIOS shows no "Press ESC for boot menu" prompt
    /// and does not wait for it.
    pub fn set_boot_menu(&mut self, show: bool) {
        self.items.insert(FW_CFG_BOOT_MENU, u16::from(show).to_le_bytes().to_vec());
    }

    /// Set [`FW_CFG_UUID`] (16 bytes, in SMBIOS byte order).
    pub fn set_uuid(&mut self, uuid: [u8; 16]) {
        self.items.insert(FW_CFG_UUID, uuid.to_vec());
    }

    /// Set any other fixed item, e.g. an architecture-local one. The signature, ID, file
    /// directory and file keys are the device's own.
    pub fn set_item(&mut self, key: u16, data: Vec<u8>) -> Result<(), FwCfgError> {
        let key = key & !FW_CFG_WRITE_CHANNEL;
        if matches!(key, FW_CFG_SIGNATURE | FW_CFG_ID | FW_CFG_FILE_DIR) || (FW_CFG_FILE_FIRST..FW_CFG_FILE_END).contains(&key) {
            return Err(FwCfgError::ReservedKey(key));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(data.len()));
        }
        self.items.insert(key, data);
        Ok(())
    }

    /// Add the named file `name` (1 – 55 bytes, no NUL; e.g. `"etc/e820"`), or replace the
    /// contents of the file of that name. Files are numbered from [`FW_CFG_FILE_FIRST`] in the
    /// byte order of their names, so adding a file renumbers the ones after it: add every file
    /// before the guest runs.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.as_bytes().contains(&0) {
            return Err(FwCfgError::BadName(name.to_string()));
        }
        if u32::try_from(data.len()).is_err() {
            return Err(FwCfgError::TooLarge(data.len()));
        }
        match self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.files[i].1 = data,
            Err(i) => {
                if self.files.len() >= usize::from(FW_CFG_FILE_END - FW_CFG_FILE_FIRST) {
                    return Err(FwCfgError::TooManyFiles);
                }
                self.files.insert(i, (name.to_string(), data));
            }
        }
        self.rebuild_dir();
        Ok(())
    }

    /// The key of the file `name`, if present.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| FW_CFG_FILE_FIRST + i as u16)
    }

    /// The contents of the file `name`, if present.
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.binary_search_by(|(n, _)| n.as_str().cmp(name)).ok().map(|i| self.files[i].1.as_slice())
    }

    /// The names of the files, in key order.
    pub fn file_names(&self) -> impl Iterator<Item = &str> {
        self.files.iter().map(|(n, _)| n.as_str())
    }

    /// Power-on state of the registers (QEMU `fw_cfg_reset`): the signature is selected at
    /// offset 0 and the DMA address is 0. Items and files stay.
    pub fn reset(&mut self) {
        self.selected = FW_CFG_SIGNATURE;
        self.offset = 0;
        self.dma_addr = 0;
    }

    /// Select `key` and rewind to its first byte.
    fn select(&mut self, key: u16) {
        self.selected = key & !FW_CFG_WRITE_CHANNEL;
        self.offset = 0;
    }

    fn rebuild_dir(&mut self) {
        let mut dir = Vec::with_capacity(4 + FILE_DIR_ENTRY_LEN * self.files.len());
        dir.extend((self.files.len() as u32).to_be_bytes());
        for (i, (name, data)) in self.files.iter().enumerate() {
            dir.extend((data.len() as u32).to_be_bytes());
            dir.extend((FW_CFG_FILE_FIRST + i as u16).to_be_bytes());
            dir.extend([0, 0]);
            let mut field = [0u8; FILE_NAME_LEN];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend(field);
        }
        self.dir = dir;
    }

    /// The bytes of the selected item, or an empty slice if the key names none. The ID item is
    /// built on the fly, so it is returned by value.
    fn with_item<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self.selected {
            FW_CFG_SIGNATURE => f(b"QEMU"),
            FW_CFG_ID => {
                let id = FW_CFG_VERSION | if self.dma.is_some() { FW_CFG_VERSION_DMA } else { 0 };
                f(&id.to_le_bytes())
            }
            FW_CFG_FILE_DIR => f(&self.dir),
            k if (FW_CFG_FILE_FIRST..FW_CFG_FILE_END).contains(&k) => {
                f(self.files.get(usize::from(k - FW_CFG_FILE_FIRST)).map_or(&[][..], |(_, d)| d.as_slice()))
            }
            k => f(self.items.get(&k).map_or(&[][..], Vec::as_slice)),
        }
    }

    /// Next byte of the selected item through the data register (0 past the end).
    fn read_data_byte(&mut self) -> u8 {
        let off = self.offset;
        let b = self.with_item(|d| d.get(off as usize).copied());
        match b {
            Some(b) => {
                self.offset += 1;
                b
            }
            None => 0,
        }
    }

    /// Carry out the DMA request whose `FWCfgDmaAccess` is at guest-physical `desc`.
    fn dma_transfer(&mut self, desc: u64) {
        let Some(mut dma) = self.dma.take() else { return };
        self.run_dma(dma.as_mut(), desc);
        self.dma = Some(dma);
    }

    fn run_dma(&mut self, mem: &mut dyn DmaMemory, desc: u64) {
        let mut access = [0u8; DMA_ACCESS_LEN];
        if mem.read(desc, &mut access).is_err() {
            let _ = mem.write(desc, &DMA_CTL_ERROR.to_be_bytes());
            return;
        }
        let control = u32::from_be_bytes(access[0..4].try_into().unwrap());
        let mut length = u32::from_be_bytes(access[4..8].try_into().unwrap());
        let mut address = u64::from_be_bytes(access[8..16].try_into().unwrap());

        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        #[derive(PartialEq)]
        enum Op {
            Read,
            Write,
            Skip,
        }
        let op = if control & DMA_CTL_READ != 0 {
            Op::Read
        } else if control & DMA_CTL_WRITE != 0 {
            Op::Write
        } else if control & DMA_CTL_SKIP != 0 {
            Op::Skip
        } else {
            length = 0;
            Op::Skip
        };

        let mut status = 0u32;
        while length > 0 && status & DMA_CTL_ERROR == 0 {
            let off = self.offset;
            let item_len = self.with_item(|d| d.len() as u32);
            let len;
            if off >= item_len {
                // Past the end (or no item): reads yield zeros, writes fail, skips do nothing.
                len = length;
                match op {
                    Op::Read => {
                        if !zero_fill(mem, address, u64::from(len)) {
                            status |= DMA_CTL_ERROR;
                        }
                    }
                    Op::Write => status |= DMA_CTL_ERROR,
                    Op::Skip => {}
                }
            } else {
                len = length.min(item_len - off);
                match op {
                    Op::Read => {
                        let ok = self.with_item(|d| mem.write(address, &d[off as usize..(off + len) as usize]).is_ok());
                        if !ok {
                            status |= DMA_CTL_ERROR;
                        }
                    }
                    // No item is writable (QEMU: `allow_write` false).
                    Op::Write => status |= DMA_CTL_ERROR,
                    Op::Skip => {}
                }
                self.offset = off + len;
            }
            address = address.wrapping_add(u64::from(len));
            length -= len;
        }
        let _ = mem.write(desc, &status.to_be_bytes());
    }
}

/// Write `len` zero bytes at `addr`; false if any part is outside guest memory.
fn zero_fill(mem: &mut dyn DmaMemory, addr: u64, len: u64) -> bool {
    static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(ZERO_CHUNK as u64) as usize;
        let Some(a) = addr.checked_add(done) else { return false };
        if mem.write(a, &ZEROS[..n]).is_err() {
            return false;
        }
        done += n as u64;
    }
    true
}

impl Device for FwCfg {
    fn read(&mut self, _now: Nanos, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (OFFSET_SELECTOR | OFFSET_DATA, 1) => data[0] = self.read_data_byte(),
            (4..=11, _) => {
                for (i, b) in data.iter_mut().enumerate() {
                    let o = offset as usize - 4 + i;
                    *b = DMA_SIGNATURE.get(o).copied().unwrap_or(0xFF);
                }
            }
            _ => data.fill(0xFF),
        }
    }

    fn write(&mut self, _now: Nanos, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (OFFSET_SELECTOR, 2) => self.select(le_value(data) as u16),
            // Byte writes to the data register: ignored, as in QEMU since v2.4.
            (OFFSET_SELECTOR | OFFSET_DATA, 1) => {}
            (OFFSET_DMA_HIGH, 4) => {
                self.dma_addr = u64::from(u32::from_be_bytes(data.try_into().unwrap())) << 32;
            }
            (OFFSET_DMA_LOW, 4) => {
                let desc = self.dma_addr | u64::from(u32::from_be_bytes(data.try_into().unwrap()));
                self.dma_addr = 0;
                self.dma_transfer(desc);
            }
            (OFFSET_DMA_HIGH, 8) => {
                let desc = u64::from_be_bytes(data.try_into().unwrap());
                self.dma_addr = 0;
                self.dma_transfer(desc);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DmaError;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Guest memory backed by a shared Vec, so the test can look at it after handing a box to
    /// the device.
    #[derive(Clone)]
    struct VecMem(Rc<RefCell<Vec<u8>>>);

    impl VecMem {
        fn new(size: usize) -> Self {
            VecMem(Rc::new(RefCell::new(vec![0; size])))
        }
        fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, DmaError> {
            let size = self.0.borrow().len() as u64;
            match addr.checked_add(len as u64) {
                Some(end) if end <= size => Ok(addr as usize..end as usize),
                _ => Err(DmaError { addr, len: len as u64 }),
            }
        }
        fn get(&self, addr: u64, len: usize) -> Vec<u8> {
            self.0.borrow()[addr as usize..addr as usize + len].to_vec()
        }
        fn put(&self, addr: u64, bytes: &[u8]) {
            self.0.borrow_mut()[addr as usize..addr as usize + bytes.len()].copy_from_slice(bytes);
        }
    }

    impl DmaMemory for VecMem {
        fn read(&mut self, addr: u64, buf: &mut [u8]) -> Result<(), DmaError> {
            let r = self.range(addr, buf.len())?;
            buf.copy_from_slice(&self.0.borrow()[r]);
            Ok(())
        }
        fn write(&mut self, addr: u64, buf: &[u8]) -> Result<(), DmaError> {
            let r = self.range(addr, buf.len())?;
            self.0.borrow_mut()[r].copy_from_slice(buf);
            Ok(())
        }
    }

    fn select(f: &mut FwCfg, key: u16) {
        f.write(0, OFFSET_SELECTOR, &key.to_le_bytes());
    }
    fn read_bytes(f: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let mut b = [0u8];
                f.read(0, OFFSET_DATA, &mut b);
                b[0]
            })
            .collect()
    }
    fn read_item(f: &mut FwCfg, key: u16, n: usize) -> Vec<u8> {
        select(f, key);
        read_bytes(f, n)
    }

    /// Write an FWCfgDmaAccess at `desc` and kick it the way SeaBIOS does (low half only).
    fn dma(f: &mut FwCfg, mem: &VecMem, desc: u64, control: u32, length: u32, address: u64) -> u32 {
        let mut a = Vec::new();
        a.extend(control.to_be_bytes());
        a.extend(length.to_be_bytes());
        a.extend(address.to_be_bytes());
        mem.put(desc, &a);
        f.write(0, OFFSET_DMA_LOW, &(desc as u32).to_be_bytes());
        u32::from_be_bytes(mem.get(desc, 4).try_into().unwrap())
    }

    #[test]
    fn signature_and_id() {
        let mut f = FwCfg::without_dma();
        assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE, 4), b"QEMU");
        // Port 0x510 reads the data register too.
        select(&mut f, FW_CFG_SIGNATURE);
        let mut b = [0u8];
        f.read(0, OFFSET_SELECTOR, &mut b);
        assert_eq!(b[0], b'Q');
        assert_eq!(read_item(&mut f, FW_CFG_ID, 4), [1, 0, 0, 0]);
        let mut f = FwCfg::new(Box::new(VecMem::new(4096)));
        assert_eq!(read_item(&mut f, FW_CFG_ID, 4), [3, 0, 0, 0]);
        // Bit 14 is ignored.
        assert_eq!(read_item(&mut f, FW_CFG_SIGNATURE | FW_CFG_WRITE_CHANNEL, 4), b"QEMU");
        // Power-on and reset select the signature.
        f.reset();
        assert_eq!(read_bytes(&mut f, 4), b"QEMU");
    }

    #[test]
    fn fixed_items() {
        let mut f = FwCfg::without_dma();
        f.set_ram_size(0x1234_5678_9000);
        f.set_cpus(1, 4);
        f.set_nographic(true);
        f.set_uuid([7; 16]);
        assert_eq!(read_item(&mut f, FW_CFG_RAM_SIZE, 8), 0x1234_5678_9000u64.to_le_bytes());
        assert_eq!(read_item(&mut f, FW_CFG_NB_CPUS, 2), [1, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_MAX_CPUS, 2), [4, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_NOGRAPHIC, 2), [1, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_BOOT_MENU, 2), [0, 0]);
        assert_eq!(read_item(&mut f, FW_CFG_UUID, 16), [7; 16]);
        f.set_item(0x8003, vec![9, 9]).unwrap();
        assert_eq!(read_item(&mut f, 0x8003, 3), [9, 9, 0]);
        assert_eq!(f.set_item(FW_CFG_ID, vec![]), Err(FwCfgError::ReservedKey(FW_CFG_ID)));
        assert_eq!(f.set_item(0x20, vec![]), Err(FwCfgError::ReservedKey(0x20)));
    }

    #[test]
    fn file_directory_format() {
        let mut f = FwCfg::without_dma();
        f.add_file("etc/e820", vec![1; 40]).unwrap();
        f.add_file("bootorder", b"/pci@i0cf8/ide@1,1/drive@0/disk@0\0".to_vec()).unwrap();
        f.add_file("etc/acpi/tables", vec![2; 300]).unwrap();
        let dir = read_item(&mut f, FW_CFG_FILE_DIR, 4 + 3 * 64);
        assert_eq!(&dir[0..4], &[0, 0, 0, 3], "big-endian count");
        let names = ["bootorder", "etc/acpi/tables", "etc/e820"];
        let sizes = [34u32, 300, 40];
        for (i, (name, size)) in names.iter().zip(sizes).enumerate() {
            let e = &dir[4 + 64 * i..4 + 64 * (i + 1)];
            assert_eq!(&e[0..4], &size.to_be_bytes(), "{name} size");
            assert_eq!(&e[4..6], &(0x20 + i as u16).to_be_bytes(), "{name} select");
            assert_eq!(&e[6..8], &[0, 0], "reserved");
            assert_eq!(&e[8..8 + name.len()], name.as_bytes());
            assert!(e[8 + name.len()..].iter().all(|&b| b == 0), "NUL padding");
        }
        assert_eq!(f.file_key("etc/e820"), Some(0x22));
        assert_eq!(f.file_key("nope"), None);
        assert_eq!(f.file_names().collect::<Vec<_>>(), names);
        // Past the directory's end: zeros.
        assert_eq!(read_bytes(&mut f, 2), [0, 0]);
        // An empty directory is a zero count.
        assert_eq!(read_item(&mut FwCfg::without_dma(), FW_CFG_FILE_DIR, 5), [0; 5]);
    }

    #[test]
    fn file_reads_by_selector() {
        let mut f = FwCfg::without_dma();
        f.add_file("b", b"second".to_vec()).unwrap();
        f.add_file("a", b"first".to_vec()).unwrap();
        assert_eq!(read_item(&mut f, 0x20, 5), b"first");
        assert_eq!(read_item(&mut f, 0x21, 6), b"second");
        // Reselecting rewinds.
        select(&mut f, 0x21);
        assert_eq!(read_bytes(&mut f, 3), b"sec");
        select(&mut f, 0x21);
        assert_eq!(read_bytes(&mut f, 3), b"sec");
        // Replacing keeps the key.
        f.add_file("a", b"FIRST!".to_vec()).unwrap();
        assert_eq!(read_item(&mut f, 0x20, 6), b"FIRST!");
        assert_eq!(f.file("b"), Some(&b"second"[..]));
        // Bad names.
        assert!(matches!(f.add_file("", vec![]), Err(FwCfgError::BadName(_))));
        assert!(matches!(f.add_file(&"x".repeat(56), vec![]), Err(FwCfgError::BadName(_))));
        assert!(matches!(f.add_file("a\0b", vec![]), Err(FwCfgError::BadName(_))));
        f.add_file(&"x".repeat(55), vec![]).unwrap();
    }

    #[test]
    fn out_of_range_reads_return_zero() {
        let mut f = FwCfg::without_dma();
        f.add_file("f", vec![0xAA; 3]).unwrap();
        assert_eq!(read_item(&mut f, 0x20, 6), [0xAA, 0xAA, 0xAA, 0, 0, 0]);
        // Keys without an item.
        for key in [0x0006, 0x0018, 0x0021, 0x3FFF, 0x8000, 0x8003, 0xFFFF] {
            assert_eq!(read_item(&mut f, key, 4), [0; 4], "key {key:#x}");
        }
    }

    #[test]
    fn dma_read_of_a_file() {
        let mem = VecMem::new(0x10000);
        let mut f = FwCfg::new(Box::new(mem.clone()));
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        f.add_file("etc/acpi/tables", data.clone()).unwrap();
        let key = u32::from(f.file_key("etc/acpi/tables").unwrap());
        // Select + read all of it, as qemu_cfg_read_entry does.
        let st = dma(&mut f, &mem, 0x100, key << 16 | DMA_CTL_SELECT | DMA_CTL_READ, 1000, 0x2000);
        assert_eq!(st, 0);
        assert_eq!(mem.get(0x2000, 1000), data);
        // Skip then read, as qemu_cfg_read_file with a skip does.
        select(&mut f, key as u16);
        assert_eq!(dma(&mut f, &mem, 0x100, DMA_CTL_SKIP, 10, 0), 0);
        assert_eq!(dma(&mut f, &mem, 0x100, DMA_CTL_READ, 5, 0x3000), 0);
        assert_eq!(mem.get(0x3000, 5), &data[10..15]);
        // The data register continues where DMA stopped.
        assert_eq!(read_bytes(&mut f, 2), &data[15..17]);
        // A read running past the end fills zeros.
        mem.put(0x4000, &[0xEE; 16]);
        select(&mut f, key as u16);
        assert_eq!(dma(&mut f, &mem, 0x100, DMA_CTL_SKIP, 996, 0), 0);
        assert_eq!(dma(&mut f, &mem, 0x100, DMA_CTL_READ, 8, 0x4000), 0);
        assert_eq!(mem.get(0x4000, 9), [&data[996..], &[0, 0, 0, 0], &[0xEE][..]].concat());
        // The file directory through DMA, the way qemu_cfg_init reads the count.
        let st = dma(&mut f, &mem, 0x100, u32::from(FW_CFG_FILE_DIR) << 16 | DMA_CTL_SELECT | DMA_CTL_READ, 4, 0x5000);
        assert_eq!(st, 0);
        assert_eq!(mem.get(0x5000, 4), [0, 0, 0, 1]);
        // A control word with no operation does nothing but the select.
        assert_eq!(dma(&mut f, &mem, 0x100, u32::from(FW_CFG_SIGNATURE) << 16 | DMA_CTL_SELECT, 4, 0x6000), 0);
        assert_eq!(read_bytes(&mut f, 4), b"QEMU");
    }

    #[test]
    fn dma_high_half_and_register_reads() {
        let mem = VecMem::new(0x1000);
        let mut f = FwCfg::new(Box::new(mem.clone()));
        // The signature through the DMA ports.
        let mut sig = [0u8; 4];
        f.read(0, OFFSET_DMA_HIGH, &mut sig);
        assert_eq!(&sig, b"QEMU");
        f.read(0, OFFSET_DMA_LOW, &mut sig);
        assert_eq!(&sig, b" CFG");
        let mut b = [0u8];
        f.read(0, 5, &mut b);
        assert_eq!(b[0], b'E');
        // A high half of 1 puts the descriptor above 4 GiB: outside this memory. The descriptor
        // cannot be read or written; nothing happens.
        mem.put(0x100, &(DMA_CTL_READ).to_be_bytes());
        f.write(0, OFFSET_DMA_HIGH, &1u32.to_be_bytes());
        f.write(0, OFFSET_DMA_LOW, &0x100u32.to_be_bytes());
        assert_eq!(mem.get(0x100, 4), DMA_CTL_READ.to_be_bytes());
        // The address register was cleared: the next low-half write addresses the first 4 GiB.
        let st = dma(&mut f, &mem, 0x100, u32::from(FW_CFG_SIGNATURE) << 16 | DMA_CTL_SELECT | DMA_CTL_READ, 4, 0x200);
        assert_eq!(st, 0);
        assert_eq!(mem.get(0x200, 4), b"QEMU");
    }

    #[test]
    fn dma_with_a_bad_address_sets_the_error_bit() {
        let mem = VecMem::new(0x1000);
        let mut f = FwCfg::new(Box::new(mem.clone()));
        f.add_file("f", vec![1; 64]).unwrap();
        let sel = u32::from(FW_CFG_FILE_FIRST) << 16 | DMA_CTL_SELECT;
        assert_eq!(dma(&mut f, &mem, 0x10, sel | DMA_CTL_READ, 64, 0x1_0000), DMA_CTL_ERROR);
        assert_eq!(dma(&mut f, &mem, 0x10, sel | DMA_CTL_READ, 64, 0xFF0), DMA_CTL_ERROR, "straddles the end");
        assert_eq!(dma(&mut f, &mem, 0x10, sel | DMA_CTL_READ, 64, u64::MAX - 8), DMA_CTL_ERROR);
        // Zero fill outside memory fails too.
        assert_eq!(dma(&mut f, &mem, 0x10, u32::from(0x30u16) << 16 | DMA_CTL_SELECT | DMA_CTL_READ, 16, 0x2000), DMA_CTL_ERROR);
        // Writes are refused, in range or not.
        assert_eq!(dma(&mut f, &mem, 0x10, sel | DMA_CTL_WRITE, 8, 0x100), DMA_CTL_ERROR);
        assert_eq!(f.file("f"), Some(&[1u8; 64][..]));
        assert_eq!(dma(&mut f, &mem, 0x10, u32::from(0x30u16) << 16 | DMA_CTL_SELECT | DMA_CTL_WRITE, 8, 0x100), DMA_CTL_ERROR);
        // A descriptor straddling the end of memory: cannot be read, so the device tries to
        // write the error bit, which fails as well; no panic.
        f.write(0, OFFSET_DMA_LOW, &0xFF8u32.to_be_bytes());
        // Without DMA memory the DMA ports do nothing.
        let mut plain = FwCfg::without_dma();
        plain.write(0, OFFSET_DMA_LOW, &0x10u32.to_be_bytes());
    }

    #[test]
    fn odd_accesses() {
        let mut f = FwCfg::without_dma();
        select(&mut f, FW_CFG_SIGNATURE);
        // Word reads of the data port and accesses to undecoded offsets read all ones.
        let mut w = [0u8; 2];
        f.read(0, OFFSET_DATA, &mut w);
        assert_eq!(w, [0xFF, 0xFF]);
        let mut b = [0u8];
        f.read(0, 2, &mut b);
        assert_eq!(b[0], 0xFF);
        f.read(0, 12, &mut b);
        assert_eq!(b[0], 0xFF);
        // Byte writes (the removed write path) and byte selector writes change nothing.
        f.write(0, OFFSET_DATA, &[0x55]);
        f.write(0, OFFSET_SELECTOR, &[0x01]);
        assert_eq!(read_bytes(&mut f, 4), b"QEMU");
    }

    #[test]
    fn never_panics_on_random_input() {
        let mem = VecMem::new(0x4000);
        let mut f = FwCfg::new(Box::new(mem.clone()));
        f.add_file("etc/e820", vec![3; 100]).unwrap();
        f.add_file("bootorder", vec![4; 10]).unwrap();
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut outcomes = [0u32; 2];
        for _ in 0..200_000 {
            let r = next();
            let offset = r % 14;
            let size = [1usize, 2, 4, 8][(r >> 8) as usize % 4];
            let mut data = vec![0u8; size];
            if r >> 12 & 1 == 0 {
                f.read(0, offset, &mut data);
            } else {
                let v = next();
                for (i, b) in data.iter_mut().enumerate() {
                    *b = (v >> (8 * i)) as u8;
                }
                if offset == OFFSET_DMA_LOW && size == 4 && r >> 13 & 1 == 0 {
                    // Aim at a random descriptor inside memory, with small lengths so zero
                    // fills stay cheap.
                    let desc = (v as u32) % 0x4000;
                    let ctl = (next() as u32) & 0x001F_001F | u32::from(next() as u16 & 0x23) << 16;
                    let mut a = Vec::new();
                    a.extend(ctl.to_be_bytes());
                    a.extend((next() as u32 % 0x3000).to_be_bytes());
                    a.extend((next() % 0x5000).to_be_bytes());
                    let inside = desc as usize + 16 <= 0x4000;
                    if inside {
                        mem.put(u64::from(desc), &a);
                    }
                    // A random earlier write may have left a high half: clear it.
                    f.write(0, OFFSET_DMA_HIGH, &[0; 4]);
                    f.write(0, offset, &desc.to_be_bytes());
                    if inside {
                        // The device always writes the control word back: 0 or the error bit.
                        let st = u32::from_be_bytes(mem.get(u64::from(desc), 4).try_into().unwrap());
                        assert!(st <= DMA_CTL_ERROR, "{st:#x}");
                        outcomes[st as usize] += 1;
                    }
                    continue;
                }
                f.write(0, offset, &data);
            }
        }
        assert!(outcomes[0] > 100 && outcomes[1] > 100, "{outcomes:?}");
    }
}
