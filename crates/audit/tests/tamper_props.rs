//! Property: any single edited byte, dropped record or swapped pair in a trail is detected.

mod common;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{append_many, config_with_key, copy_dir, segments};
use gateway_audit::{AuditWriter, verify};
use proptest::prelude::*;
use proptest::sample::Index;

/// One clean trail (several segments, shut down cleanly), built once.
struct Base {
    dir: tempfile::TempDir,
    key: [u8; 32],
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let key = runtime.block_on(async {
            let (config, signer) = config_with_key(dir.path());
            let writer = AuditWriter::open(config).await.unwrap();
            for chunk in 0..6 {
                append_many(&writer, chunk * 10, 10).await;
            }
            writer.shutdown().await.unwrap();
            signer.public_key()
        });
        assert!(verify(dir.path(), Some(&key)).is_ok());
        Base { dir, key }
    })
}

#[derive(Debug, Clone)]
enum Tamper {
    Flip { line: Index, byte: Index, mask: u8 },
    Drop { line: Index },
    Swap { a: Index, b: Index },
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (any::<Index>(), any::<Index>(), 1u8..=255).prop_map(|(line, byte, mask)| Tamper::Flip {
            line,
            byte,
            mask
        }),
        any::<Index>().prop_map(|line| Tamper::Drop { line }),
        (any::<Index>(), any::<Index>()).prop_map(|(a, b)| Tamper::Swap { a, b }),
    ]
}

/// Every record line of the trail as (file, line bytes), in trail order.
fn lines(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for path in segments(dir) {
        let bytes = std::fs::read(&path).unwrap();
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            out.push((path.clone(), line.to_vec()));
        }
    }
    out
}

fn write_back(dir: &Path, lines: &[(PathBuf, Vec<u8>)]) {
    for path in segments(dir) {
        let bytes: Vec<u8> = lines
            .iter()
            .filter(|(p, _)| *p == path)
            .flat_map(|(_, l)| l.clone())
            .collect();
        std::fs::write(&path, bytes).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn any_single_edit_drop_or_swap_is_detected(t in tamper()) {
        let base = base();
        let dir = tempfile::tempdir().unwrap();
        copy_dir(base.dir.path(), dir.path());
        let mut all = lines(dir.path());
        match &t {
            Tamper::Flip { line, byte, mask } => {
                let n = line.index(all.len());
                let l = &mut all[n].1;
                let i = byte.index(l.len());
                l[i] ^= mask;
            }
            Tamper::Drop { line } => {
                let n = line.index(all.len());
                all.remove(n);
            }
            Tamper::Swap { a, b } => {
                let (a, b) = (a.index(all.len()), b.index(all.len()));
                prop_assume!(a != b);
                // Swap contents, keeping each position's file.
                let tmp = all[a].1.clone();
                all[a].1 = all[b].1.clone();
                all[b].1 = tmp;
            }
        }
        write_back(dir.path(), &all);
        let result = verify(dir.path(), Some(&base.key));
        prop_assert!(result.is_err(), "{t:?} went undetected: {result:?}");
    }
}
