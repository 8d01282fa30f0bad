//! The derives as users meet them: code that must compile, and mistakes with the messages users
//! see (checked in under `tests/ui/fail/*.stderr`; regenerate with `TRYBUILD=overwrite`).

#[test]
fn derives() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.compile_fail("tests/ui/fail/*.rs");
}
