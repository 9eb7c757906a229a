//! `fork` (`dup_mmap`) and `execve` (a fresh `mm`).

use super::*;

impl Mm {
    /// The child's memory after `fork()` (`clone` without `CLONE_VM`): `VM_DONTCOPY` VMAs are left out,
    /// locks are not inherited (`VM_LOCKED`/`VM_LOCKONFAULT` cleared, `locked_vm` 0, `MCL_FUTURE`
    /// dropped), `VM_WIPEONFORK` VMAs start without an `anon_vma`, and inherited `anon_vma`s get a
    /// child of their own whose chain is not singular. Guard markers are copied with the page tables
    /// (every VMA but wiped ones). A `clone` with `CLONE_VM` shares this `Mm` instead.
    pub fn fork(&self) -> Mm {
        let mut child = self.clone();
        child.vmas.clear();
        child.guards = Ranges::default();
        child.locked_vm = 0;
        child.def_flags &= VM_NOHUGEPAGE;
        for v in self.vmas.iter() {
            if v.flags & VM_DONTCOPY != 0 {
                continue;
            }
            let mut c = v.clone();
            c.flags &= !VM_LOCKED_MASK;
            if c.flags & VM_WIPEONFORK != 0 {
                c.anon = None;
            } else {
                if v.anon.is_some() {
                    c.anon = Some(Anon { id: child.fresh_id(), singular: false });
                }
                // copy_page_range copies guard markers, file-backed VMAs' too (seen on 6.18).
                let mut at = v.start;
                while let Some((s, e)) = self.guards.first_in(at, v.end) {
                    child.guards.insert(s, e);
                    at = e;
                }
            }
            child.vmas.insert(c);
        }
        child
    }

    /// The memory after `execve`: empty, with the new program's layout (the loader's mappings are the
    /// caller's to add, e.g. from the new `maps`).
    pub fn exec(&self, layout: Layout) -> Mm {
        Mm::new(self.params.clone(), layout)
    }
}
