//! Criterion benchmarks of tier 1: Cranelift translation time per guest instruction, and the
//! run time of small loops once translated (entry, chaining and the inline TLB path).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use heron_cpu::testutil::{NullBus, TestCpu, CODE, DATA};
use heron_cpu::tier1::{TbInfo, Translator};
use iced_x86::{Decoder, DecoderOptions, Instruction};

/// A typical straight-line block: loads, stores, ALU work, a compare and a branch.
fn sample_block() -> Vec<Instruction> {
    // mov rax,[rdi]; add rax,rsi; mov [rdi+8],rax; lea rcx,[rax+rdx*4]; shr rcx,3; xor edx,ecx;
    // imul r8,rcx,0x45; movzx r9d,byte [rdi+r8]; sub r9,rax; cmp r9,rdx; jne -0x30
    let code: &[u8] = &[
        0x48, 0x8B, 0x07, 0x48, 0x01, 0xF0, 0x48, 0x89, 0x47, 0x08, 0x48, 0x8D, 0x0C, 0x90, 0x48, 0xC1, 0xE9, 0x03, 0x31,
        0xCA, 0x4C, 0x6B, 0xC1, 0x45, 0x46, 0x0F, 0xB6, 0x0C, 0x07, 0x49, 0x29, 0xC1, 0x49, 0x39, 0xD1, 0x75, 0xD0,
    ];
    let mut d = Decoder::with_ip(64, code, 0x40_0000, DecoderOptions::NONE);
    let mut v = Vec::new();
    while d.can_decode() {
        v.push(d.decode());
    }
    v
}

fn translate(c: &mut Criterion) {
    let block = sample_block();
    let mut jit = heron_jit::Jit::new(&heron_jit::JitConfig::default()).expect("JIT");
    let mut g = c.benchmark_group("jit");
    g.throughput(Throughput::Elements(block.len() as u64));
    g.bench_function("translate_per_guest_insn", |b| {
        b.iter(|| {
            let tb = TbInfo { blocks: vec![&block[..]], bits: 64, cpl: 0, page: Some(0x40_0000) };
            if jit.translate(&tb).is_err() {
                jit.flush();
            }
        })
    });
    g.finish();
}

/// The interpreter's loops (benches/interp.rs) with tier 1 on, after translation.
fn loops(c: &mut Criterion) {
    let alu = [0xB9, 0xA0, 0x86, 0x01, 0x00, 0x01, 0xC8, 0x31, 0xC2, 0xFF, 0xC9, 0x75, 0xF8, 0xF4];
    let mut mem = vec![0x48, 0xC7, 0xC6];
    mem.extend_from_slice(&(DATA as u32).to_le_bytes());
    mem.extend_from_slice(&[0xB9, 0xA0, 0x86, 0x01, 0x00, 0x8B, 0x06, 0x01, 0x46, 0x08, 0xFF, 0xC9, 0x75, 0xF7, 0xF4]);
    let mut g = c.benchmark_group("jit");
    g.throughput(Throughput::Elements(400_001));
    for (name, code) in [("alu_loop_400k_insns", &alu[..]), ("mem_loop_400k_insns", &mem[..])] {
        let mut t = TestCpu::new();
        t.cpu.translator = Some(heron_jit::default_translator(false).expect("JIT"));
        t.ram.write_bytes(CODE, code).unwrap();
        t.cpu.flush_code();
        g.bench_function(name, |b| {
            b.iter(|| {
                t.cpu.s.rip = CODE;
                t.cpu.s.halted = false;
                let until = t.cpu.s.icount + 10_000_000;
                t.cpu.run(&mut NullBus, until)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, translate, loops);
criterion_main!(benches);
