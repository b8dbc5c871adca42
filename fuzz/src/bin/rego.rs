fn main() {
    afl::fuzz!(|data: &[u8]| gitward_fuzz::rego(data));
}
