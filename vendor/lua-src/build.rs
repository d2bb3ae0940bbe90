// synod: the C sources are compiled by mlua-sys's build script, which cargo
// reruns only when this crate changes: rerun (and so rebuild this crate and
// that script) whenever a patched source changes.
fn main() {
    println!("cargo:rerun-if-changed=lua-5.1.5");
}
