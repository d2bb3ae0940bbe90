//! The `bit` library Redis bundles (LuaBitOp): 32-bit operations on Lua
//! numbers, results as signed 32-bit numbers.

use mlua::{Lua, Table, Variadic};

/// LuaBitOp's normalisation: the number rounded to an integer, then taken
/// modulo 2^32 as a signed 32-bit value.
pub(crate) fn tobit(x: f64) -> i32 {
    if !x.is_finite() {
        return 0;
    }
    let rounded = x.round_ties_even();
    let modulo = rounded.rem_euclid(4_294_967_296.0);
    (modulo as u64 as u32) as i32
}

fn fold(args: &Variadic<f64>, op: fn(i32, i32) -> i32) -> f64 {
    let mut iter = args.iter();
    let first = iter.next().map_or(0, |x| tobit(*x));
    f64::from(iter.fold(first, |acc, x| op(acc, tobit(*x))))
}

/// Builds the `bit` table.
pub(crate) fn library(lua: &Lua) -> mlua::Result<Table> {
    let bit = lua.create_table()?;
    bit.set(
        "tobit",
        lua.create_function(|_, x: f64| Ok(f64::from(tobit(x))))?,
    )?;
    bit.set(
        "bnot",
        lua.create_function(|_, x: f64| Ok(f64::from(!tobit(x))))?,
    )?;
    bit.set(
        "band",
        lua.create_function(|_, a: Variadic<f64>| Ok(fold(&a, |x, y| x & y)))?,
    )?;
    bit.set(
        "bor",
        lua.create_function(|_, a: Variadic<f64>| Ok(fold(&a, |x, y| x | y)))?,
    )?;
    bit.set(
        "bxor",
        lua.create_function(|_, a: Variadic<f64>| Ok(fold(&a, |x, y| x ^ y)))?,
    )?;
    let shift = |f: fn(i32, u32) -> i32| {
        move |_: &Lua, (x, n): (f64, f64)| Ok(f64::from(f(tobit(x), (tobit(n) & 31) as u32)))
    };
    bit.set(
        "lshift",
        lua.create_function(shift(|x, n| ((x as u32) << n) as i32))?,
    )?;
    bit.set(
        "rshift",
        lua.create_function(shift(|x, n| ((x as u32) >> n) as i32))?,
    )?;
    bit.set("arshift", lua.create_function(shift(|x, n| x >> n))?)?;
    bit.set(
        "rol",
        lua.create_function(shift(|x, n| (x as u32).rotate_left(n) as i32))?,
    )?;
    bit.set(
        "ror",
        lua.create_function(shift(|x, n| (x as u32).rotate_right(n) as i32))?,
    )?;
    bit.set(
        "bswap",
        lua.create_function(|_, x: f64| Ok(f64::from(tobit(x).swap_bytes())))?,
    )?;
    bit.set(
        "tohex",
        lua.create_function(|_, (x, n): (f64, Option<f64>)| {
            let value = tobit(x) as u32;
            let n = n.map_or(8, tobit);
            let digits = n.unsigned_abs().clamp(1, 8) as usize;
            let text = if n < 0 {
                format!("{value:08X}")
            } else {
                format!("{value:08x}")
            };
            Ok(text[8 - digits..].to_string())
        })?,
    )?;
    Ok(bit)
}

#[cfg(test)]
mod tests {
    use super::tobit;

    #[test]
    fn tobit_wraps_like_luabitop() {
        assert_eq!(tobit(1.0), 1);
        assert_eq!(tobit(4_294_967_295.0), -1);
        assert_eq!(tobit(2_147_483_648.0), i32::MIN);
        assert_eq!(tobit(-1.0), -1);
        assert_eq!(tobit(f64::NAN), 0);
        assert_eq!(tobit(1e300), 0);
    }
}
