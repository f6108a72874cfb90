//! Several VMs at once: what must differ between them.

use crate::config::VmConfig;
use crate::error::SetError;

/// Checks that VMs can run side by side: distinct names, distinct domain
/// ids ([`VmConfig::domain_id`], so a given `uuid` may not equal another
/// VM's name-derived id) and distinct `nvram_file`s. Files are compared as
/// written; a caller that resolves relative paths should pass configs
/// whose `nvram_file` holds the resolved path. The first clash in slice
/// order is returned. Quadratic in the number of VMs, with no allocation.
pub fn check_set<'a>(vms: &[VmConfig<'a>]) -> Result<(), SetError<'a>> {
    for (second, b) in vms.iter().enumerate() {
        for (first, a) in vms.iter().enumerate().take(second) {
            if a.name == b.name {
                return Err(SetError::DuplicateName {
                    name: b.name,
                    first,
                    second,
                });
            }
            if a.domain_id() == b.domain_id() {
                return Err(SetError::DuplicateId {
                    id: b.domain_id(),
                    first,
                    second,
                });
            }
            if let (Some(fa), Some(fb)) = (a.nvram_file, b.nvram_file) {
                if fa == fb {
                    return Err(SetError::DuplicateNvramFile {
                        path: fb,
                        first,
                        second,
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::id_from_name;

    fn vm<'a>(text: &'a str) -> VmConfig<'a> {
        VmConfig::parse(text).unwrap()
    }

    #[test]
    fn clashes_are_found_and_distinct_vms_pass() {
        let a = vm("name='a'\nmemory=16\nnvram=8\nnvram_file='a.img'");
        let b = vm("name='b'\nmemory=16\nnvram=8\nnvram_file='b.img'");
        let c = vm("name='c'\nmemory=16");
        assert_eq!(check_set(&[a, b, c]), Ok(()));
        assert_eq!(check_set(&[]), Ok(()));
        let a2 = vm("name='a'\nmemory=32");
        assert_eq!(
            check_set(&[a, b, a2]),
            Err(SetError::DuplicateName {
                name: "a",
                first: 0,
                second: 2
            })
        );
        let mut same_id = c;
        same_id.name = "d";
        same_id.uuid = Some(id_from_name("b"));
        assert_eq!(
            check_set(&[a, b, same_id]),
            Err(SetError::DuplicateId {
                id: id_from_name("b"),
                first: 1,
                second: 2
            })
        );
        let b_on_a = vm("name='b'\nmemory=16\nnvram=8\nnvram_file='a.img'");
        assert_eq!(
            check_set(&[c, a, b_on_a]),
            Err(SetError::DuplicateNvramFile {
                path: "a.img",
                first: 1,
                second: 2
            })
        );
    }
}
