fn main() {
    afl::fuzz!(|data: &[u8]| gitward_fuzz::yaml(data));
}
