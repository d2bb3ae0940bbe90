//! The sandbox's own Lua code (the prelude, the pattern wrappers), compiled
//! once per process and loaded into each fresh state as bytecode.
//!
//! Every script runs in a fresh state, and parsing the prelude was half of
//! a node's CPU for `EVAL "return 1" 0` (one parse for the dry run, one per
//! replica's apply). The bytecode is the compiler's own output for the same
//! text, loaded from Rust, so a run executes the same instructions. Loading
//! it is not the same as parsing, though:
//! - the parser makes a table per function it compiles, and each takes a
//!   creation number (synod's patch to Lua 5.1, `vendor/lua-src/SYNOD.md`),
//!   so the objects a script makes get other numbers than under a build that
//!   parsed the prelude, and `pairs` over a table keyed by tables or
//!   functions can visit them in another order;
//! - the loading's allocations, and its charge to the cost counter (one unit
//!   per byte read: bytecode instead of source), differ too.
//!
//! Every replica of one build loads the same way, so they agree: there is no
//! fallback to the text (a process that could not compile the prelude would
//! differ from its peers; it stops instead, as on any allocation failure).
//! Across builds this is an apply change like any edit of the prelude, which
//! the README's "Known gaps" covers; log entries written before costs were
//! charged (`Limits::costs_charged` false), which promise to replay as they
//! were applied, still parse the prelude. Scripts never load bytecode:
//! `loadstring` refuses it (the prelude) and user code is loaded as text.

use std::sync::OnceLock;

use mlua::chunk::{Chunk, ChunkMode};
use mlua::{Lua, LuaOptions, StdLib};

/// The name of the chunks (errors in them read `synod:LINE:`).
const NAME: &str = "=synod";

/// One constant chunk and its bytecode, made on first use.
pub(super) struct Precompiled {
    source: &'static str,
    bytecode: OnceLock<Vec<u8>>,
}

impl Precompiled {
    pub(super) const fn new(source: &'static str) -> Self {
        Self {
            source,
            bytecode: OnceLock::new(),
        }
    }

    /// The chunk to load into `lua`: the bytecode, or with `bytecode` false
    /// the text (for log entries that replay as they were applied).
    pub(super) fn load<'a>(&'a self, lua: &Lua, bytecode: bool) -> Chunk<'a> {
        if !bytecode {
            return self.text(lua);
        }
        let code = self.bytecode.get_or_init(|| self.compile());
        lua.load(code.as_slice())
            .set_name(NAME)
            .set_mode(ChunkMode::Binary)
    }

    /// The chunk's text, to parse.
    fn text<'a>(&'a self, lua: &Lua) -> Chunk<'a> {
        lua.load(self.source)
            .set_name(NAME)
            .set_mode(ChunkMode::Text)
    }

    /// Compiles the text in a scratch state (no memory limit) and dumps it
    /// with its debug information, so errors name the same lines. Only an
    /// allocation failure can make it fail: the process stops then (see the
    /// module docs for why there is no fallback).
    fn compile(&self) -> Vec<u8> {
        let compiled = Lua::new_with(StdLib::NONE, LuaOptions::default()).and_then(|lua| {
            self.text(&lua)
                .into_function()
                .map(|function| function.dump(false))
        });
        match compiled {
            Ok(code) => code,
            Err(error) => {
                // A replica that went on without it would answer scripts
                // unlike its peers.
                eprintln!("synod: cannot compile the Lua sandbox's own code: {error}");
                std::process::abort()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk loaded as bytecode runs as its text does, with errors that
    /// name the same line; the bytecode is Lua's binary chunk.
    #[test]
    fn bytecode_runs_as_the_text_does() {
        let chunk = Precompiled::new("local a = ...\nif a > 1 then error('big') end\nreturn a * 2");
        for bytecode in [false, true] {
            let lua = Lua::new_with(StdLib::NONE, LuaOptions::default()).expect("state");
            let doubled: i64 = chunk.load(&lua, bytecode).call(1).expect("runs");
            assert_eq!(doubled, 2);
            let error = chunk
                .load(&lua, bytecode)
                .call::<i64>(2)
                .expect_err("fails");
            assert!(error.to_string().contains("synod:2: big"), "{error}");
        }
        let code = chunk.bytecode.get().expect("compiled on first use");
        assert_eq!(&code[..4], b"\x1bLua");
    }
}
