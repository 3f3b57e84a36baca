//! The OS developer's loop: a small Multiboot kernel, assembled here with nasm, boots with
//! `--kernel`, prints on COM1, and leaves through isa-debug-exit with the status it chose.

use std::process::Command;

const KERNEL: &str = r#"
bits 32
org 0x100000
header:
    dd 0x1BADB002               ; magic
    dd 0x00010000               ; flags: a.out kludge (addresses below)
    dd -(0x1BADB002 + 0x00010000)
    dd header                   ; header_addr
    dd 0x100000                 ; load_addr
    dd 0                        ; load_end_addr: the whole file
    dd 0                        ; bss_end_addr: none
    dd start                    ; entry_addr
start:
    mov esp, 0x90000            ; Multiboot leaves ESP undefined: make a stack
    cmp eax, 0x2BADB002         ; the loader's magic
    jne fail
    mov ecx, [ebx + 16]         ; cmdline pointer (flags bit 2)
    mov esi, msg
    call puts
    mov esi, ecx
    call puts
    mov esi, nl
    call puts
    mov dx, 0xF4                ; isa-debug-exit: status (0x21 << 1) | 1 = 67
    mov eax, 0x21
    out dx, eax
fail:
    cli
    hlt
    jmp fail
puts:                           ; print the NUL-terminated string at esi on COM1
    lodsb
    test al, al
    jz .done
    mov ah, al
    mov dx, 0x3FD               ; LSR: wait for THRE
.wait:
    in al, dx
    test al, 0x20
    jz .wait
    mov al, ah
    mov dx, 0x3F8
    out dx, al
    jmp puts
.done:
    ret
msg: db "multiboot kernel says hello, cmdline=", 0
nl: db 10, 0
"#;

#[test]
fn multiboot_kernel_prints_and_exits_through_debug_exit() {
    if Command::new("nasm").arg("-v").output().is_err() {
        eprintln!("skipping: nasm not installed");
        return;
    }
    let dir = std::env::temp_dir().join(format!("heron-mb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("k.asm");
    let bin = dir.join("k.bin");
    std::fs::write(&src, KERNEL).unwrap();
    let asm = Command::new("nasm").args(["-f", "bin", "-o"]).arg(&bin).arg(&src).output().unwrap();
    assert!(asm.status.success(), "nasm: {}", String::from_utf8_lossy(&asm.stderr));
    let out = Command::new(env!("CARGO_BIN_EXE_heron"))
        .args(["--kernel", bin.to_str().unwrap(), "--append", "hello-args", "-m", "32M"])
        .args(["--device", "isa-debug-exit,iobase=0xf4,iosize=4", "--max-insns", "10000000"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("multiboot kernel says hello, cmdline=hello-args"), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some((0x21 << 1) | 1), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
