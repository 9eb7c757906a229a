//! Fork (`vmspace_fork`): the child's map from each entry's inheritance.

use super::effect::Effect;
use super::error::VmError;
use super::types::{EntryFlags, Inherit, MapKind, MapObject};
use super::{Item, VmMap};

impl<O: MapObject> VmMap<O> {
    /// The map a forked child gets (`vmspace_fork`), marking the parent's side as fork requires.
    ///
    /// Per entry: `Share` keeps the object (a parent entry that still needs a copy is made private first,
    /// so both share the private copy); `Copy` marks both sides COW|NEEDS_COPY (a wired parent entry is
    /// copied eagerly instead: the child gets a private copy, the parent is untouched); `None` leaves a
    /// hole; `Zero` gives the child fresh anonymous memory with the same protection. Wiring is never
    /// inherited, nor is `wire_future` (Linux clears `mlockall` flags in the child). Stack reservations
    /// and settings are inherited. The child's size is recomputed from its entries.
    ///
    /// A map holding a submap is refused with `InvalidArgument`, and nothing changes.
    pub fn fork(&mut self) -> Result<VmMap<O>, VmError> {
        self.begin();
        if self.store.iter().any(|e| matches!(e.value.kind, MapKind::Submap(_))) {
            return Err(VmError::InvalidArgument);
        }
        let mut child = VmMap::with_page_size(self.min, self.max, self.page_size)?;
        child.stack_limit = self.stack_limit;
        child.stack_growth = self.stack_growth;
        self.begin();
        let starts: alloc::vec::Vec<u64> = self.store.iter().map(|e| e.start).collect();
        for s in starts {
            let e = self.store.get(s).expect("listed").clone();
            let mut c = match e.value.inherit {
                Inherit::None => continue,
                Inherit::Share => {
                    if e.value.flags.contains(EntryFlags::NEEDS_COPY) {
                        self.update(s, |a| a.flags.set(EntryFlags::NEEDS_COPY, false));
                    }
                    self.store.get(s).expect("listed").clone()
                }
                Inherit::Copy if e.value.wired_count > 0 => {
                    let mut c = e.clone();
                    c.value.flags.set(EntryFlags::COW, true);
                    c.value.flags.set(EntryFlags::NEEDS_COPY, false);
                    c
                }
                Inherit::Copy => {
                    let cow = EntryFlags::COW | EntryFlags::NEEDS_COPY;
                    if !e.value.flags.contains(cow) {
                        self.update(s, |a| a.flags = a.flags | cow);
                        self.effect(Effect::WriteProtect(e.range()));
                    }
                    self.store.get(s).expect("listed").clone()
                }
                Inherit::Zero => {
                    let mut c = e.clone();
                    c.value.object = O::anonymous();
                    c.value.offset = 0;
                    c.value.flags.set(EntryFlags::COW | EntryFlags::NEEDS_COPY, false);
                    c
                }
            };
            c.value.wired_count = 0;
            c.value.user_wired = false;
            child.push_sorted(c);
        }
        child.journal.clear();
        let all = self.min..self.max;
        self.simplify(&all);
        self.commit();
        Ok(child)
    }

    /// Appends an entry above every other one, merging it with the last when they are mergeable. For
    /// building a map in address order (fork, loading a snapshot).
    pub(crate) fn push_sorted(&mut self, e: Item<super::Attrs<O>>) {
        let r = e.range();
        self.put(e);
        self.simplify(&r);
    }
}
