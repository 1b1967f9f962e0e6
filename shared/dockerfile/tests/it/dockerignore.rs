//! .dockerignore through the public API.

use strata_dockerfile::DockerIgnore;

#[test]
fn typical_file() {
    let d = DockerIgnore::parse(".git\nnode_modules/\n**/*.log\n*.md\n!README.md\n/build\n# comment\ntarget/**\n!target/release/app\n").unwrap();
    assert!(d.matches(".git/HEAD"));
    assert!(d.matches("node_modules/x/y.js"));
    assert!(d.matches("a/b/debug.log"));
    assert!(d.matches("debug.log"));
    assert!(d.matches("CHANGES.md"));
    assert!(!d.matches("README.md"));
    assert!(!d.matches("docs/guide.md"), "*.md only matches at the root");
    assert!(d.matches("build/out.o"));
    assert!(!d.matches("src/build/out.o"));
    assert!(d.matches("target/debug/x"));
    assert!(!d.matches("target/release/app"));
    assert!(d.can_skip_dir("node_modules"));
    assert!(!d.can_skip_dir("target"));
    assert!(!d.can_skip_dir("src"));
}

#[test]
fn windows_style_and_dots() {
    let d = DockerIgnore::parse("./a/../b\n").unwrap();
    assert_eq!(d.patterns[0].text, "b");
    assert!(d.matches("b/c"));
}

#[test]
fn hostile_patterns_are_fast() {
    let pat = format!("{}x", "*a".repeat(200));
    let d = DockerIgnore::parse(&pat).unwrap();
    let start = std::time::Instant::now();
    assert!(!d.matches(&"a".repeat(2000)));
    assert!(start.elapsed().as_secs() < 2);
}
