//! SSE/SSE2 and MMX instructions (Intel SDM Vol. 1 ch. 9–11). Being written.
use iced_x86::Instruction;

use crate::exec::Ctx;
use crate::{Exception, Res};

impl Ctx<'_> {
    /// Execute an SSE/SSE2/MMX instruction; `Ok(None)` if `i` is not one.
    pub fn exec_sse(&mut self, _i: &Instruction) -> Res<Option<()>> {
        let _ = Exception::ud();
        Ok(None)
    }
}
