fn main() {
    strata_build_support::link_executables();
}
