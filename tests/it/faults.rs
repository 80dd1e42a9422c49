//! A short seeded subset of the fault harness (`benches/faults_harness.rs`; the full run is
//! `cargo bench --bench faults`, recorded in RELIABILITY.md): SIGKILLs at random instants and
//! injected store faults, each followed by recovery and a check of the lake by an independent
//! reader (deltalake + polars).
#[path = "../../benches/faults_harness.rs"]
#[allow(dead_code)] // copy_project serves the bench only
mod harness;

use crate::common::{Project, REPO};

#[test]
fn kills_and_store_faults_never_leave_a_mixed_or_older_lake() {
    let p = Project::with_demo();
    let h = harness::Harness {
        bin: assert_cmd::cargo::cargo_bin("restock"),
        dir: p.path().to_path_buf(),
        python: harness::python(std::path::Path::new(REPO)),
        checker: std::path::Path::new(REPO).join("benches/check_lake.py"),
        pipeline: "pipelines/nightly.yaml".into(),
        date: "2026-10-28".into(),
    };
    let (reference, timeline) = h.reference().expect("reference run");
    assert!(reference.contains_key("forecasts") && reference.contains_key("sales_clean"), "{reference:?}");
    // Kills early, mid-run and late, and store faults in the publish.
    let mut faults = harness::draw_faults(4, 3, timeline, false);
    faults.push(harness::Fault::Store("put@tables/forecasts:1+:denied".into()));
    // A transient error in the publish is retried there; a lasting one leaves it pending.
    faults.push(harness::Fault::Store("put@tables/sales_clean:1:503".into()));
    faults.push(harness::Fault::Store("cput@_restock/complete/:1+:denied".into()));
    if harness::can_mount() {
        faults.push(harness::Fault::DiskFull { table: "forecasts".into() });
        faults.push(harness::Fault::ReadOnly { table: "demand_daily".into() });
    } else {
        eprintln!("nothing can be mounted here: the full-disk and read-only trials are left to `cargo bench --bench faults`");
    }
    let mut trials = vec![];
    for (n, fault) in faults.into_iter().enumerate() {
        trials.push(h.trial(n + 1, fault, &reference).expect("trial ran"));
    }
    harness::print_trials(&trials);
    let violations: Vec<&String> = trials.iter().flat_map(|t| &t.violations).collect();
    assert!(violations.is_empty(), "{violations:#?}");
    assert_eq!((trials[5].left.as_str(), trials[5].recovery.as_str()), ("succeeded", "none"), "the 503 was retried: {trials:#?}");
    // The lasting publish faults left the run past its commit point, and resume finished it.
    for (n, t) in trials.iter().enumerate().filter(|(n, _)| *n >= 4 && *n != 5) {
        assert!(t.left == "pending publish" && t.recovery == "resume", "trial {}: {t:#?}", n + 1);
    }
}
