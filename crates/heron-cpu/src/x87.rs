//! x87 FPU instructions (Intel SDM Vol. 1 ch. 8) and FXSAVE/FXRSTOR. Being written.
use iced_x86::Instruction;

use crate::exec::Ctx;
use crate::{Exception, Res};

impl Ctx<'_> {
    /// Floating-point and SIMD dispatch: SSE/MMX, then x87; anything else is #UD.
    pub fn exec_fp(&mut self, i: &Instruction) -> Res<()> {
        if let Some(()) = self.exec_sse(i)? {
            return Ok(());
        }
        if let Some(()) = self.exec_x87(i)? {
            return Ok(());
        }
        Err(Exception::ud())
    }

    /// Execute an x87 instruction; `Ok(None)` if `i` is not one.
    pub fn exec_x87(&mut self, _i: &Instruction) -> Res<Option<()>> {
        Ok(None)
    }
}
