//! Criterion benchmarks of the tier-0 engine: decode-and-execute throughput on small loops.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use heron_cpu::testutil::TestCpu;

/// A counted loop of ALU work: 4 instructions per iteration.
fn alu_loop(c: &mut Criterion) {
    // mov ecx, 100000; l: add eax, ecx; xor edx, eax; dec ecx; jnz l
    let code = [0xB9, 0xA0, 0x86, 0x01, 0x00, 0x01, 0xC8, 0x31, 0xC2, 0xFF, 0xC9, 0x75, 0xF8];
    let mut g = c.benchmark_group("interp");
    g.throughput(Throughput::Elements(400_001));
    g.bench_function("alu_loop_400k_insns", |b| {
        let mut t = TestCpu::new();
        b.iter(|| t.run(&code, 10_000_000));
    });
    // Memory: mov rsi, DATA; mov ecx, 100000; l: mov eax,[rsi]; add [rsi+8],eax; dec ecx; jnz l
    let mut mem = vec![0x48, 0xC7, 0xC6];
    mem.extend_from_slice(&(heron_cpu::testutil::DATA as u32).to_le_bytes());
    mem.extend_from_slice(&[0xB9, 0xA0, 0x86, 0x01, 0x00, 0x8B, 0x06, 0x01, 0x46, 0x08, 0xFF, 0xC9, 0x75, 0xF7]);
    g.bench_function("mem_loop_400k_insns", |b| {
        let mut t = TestCpu::new();
        b.iter(|| t.run(&mem, 10_000_000));
    });
    g.finish();
}

criterion_group!(benches, alu_loop);
criterion_main!(benches);
