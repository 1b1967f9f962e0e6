//! The in-memory twin of [`crate::RocksStore`], for fast tests of storage logic.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, RwLock},
};

use crate::{BulkLoad, Durability, Entry, KvError, KvStore, Op, Result, Space, WriteBatch};

type Tree = BTreeMap<Vec<u8>, Vec<u8>>;
type Spaces = Arc<RwLock<HashMap<&'static str, Tree>>>;

/// A [`KvStore`] in memory: same semantics, no persistence.
#[derive(Debug)]
pub struct MemoryStore {
    spaces: Spaces,
}

impl MemoryStore {
    /// An empty store with the given spaces.
    pub fn new(spaces: &[Space]) -> Self {
        Self {
            spaces: Arc::new(RwLock::new(
                spaces.iter().map(|s| (s.name, Tree::new())).collect(),
            )),
        }
    }
}

/// A bulk load held aside until it finishes.
struct MemoryBulk {
    spaces: Spaces,
    space: Space,
    entries: Vec<Entry>,
}

impl BulkLoad for MemoryBulk {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        crate::check_bulk_order(self.entries.last().map(|(k, _)| k.as_slice()), key)?;
        self.entries.push((key.to_vec(), value.to_vec()));
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let mut spaces = self.spaces.write().map_err(poisoned)?;
        let tree = spaces
            .get_mut(self.space.name)
            .ok_or(KvError::UnknownSpace(self.space.name))?;
        tree.extend(self.entries);
        Ok(())
    }
}

fn poisoned<T>(_: T) -> KvError {
    KvError::Backend("memory store lock poisoned".into())
}

impl MemoryStore {
    /// `Ok` when `space` was declared.
    fn check_space(&self, space: Space) -> Result<()> {
        if self
            .spaces
            .read()
            .map_err(poisoned)?
            .contains_key(space.name)
        {
            Ok(())
        } else {
            Err(KvError::UnknownSpace(space.name))
        }
    }
}

impl KvStore for MemoryStore {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let spaces = self.spaces.read().map_err(poisoned)?;
        let tree = spaces
            .get(space.name)
            .ok_or(KvError::UnknownSpace(space.name))?;
        Ok(tree.get(key).cloned())
    }

    fn write(&self, batch: WriteBatch, _durability: Durability) -> Result<()> {
        let mut spaces = self.spaces.write().map_err(poisoned)?;
        // validate first so the batch is all-or-nothing
        for op in &batch.ops {
            let (Op::Put(s, ..) | Op::Delete(s, _) | Op::DeleteRange(s, ..)) = op;
            if !spaces.contains_key(s.name) {
                return Err(KvError::UnknownSpace(s.name));
            }
        }
        for op in batch.ops {
            match op {
                Op::Put(s, k, v) => {
                    spaces.get_mut(s.name).map(|t| t.insert(k, v.to_vec()));
                }
                Op::Delete(s, k) => {
                    spaces.get_mut(s.name).map(|t| t.remove(&k));
                }
                Op::DeleteRange(s, from, to) => {
                    if let Some(t) = spaces.get_mut(s.name)
                        && from < to
                    {
                        let doomed: Vec<Vec<u8>> =
                            t.range(from..to).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            t.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn flush(&self, space: Space) -> Result<()> {
        self.check_space(space)
    }

    fn bulk(&self, space: Space) -> Result<Box<dyn BulkLoad>> {
        self.check_space(space)?;
        Ok(Box::new(MemoryBulk {
            spaces: self.spaces.clone(),
            space,
            entries: Vec::new(),
        }))
    }

    fn drop_files_in_range(&self, space: Space, _from: &[u8], _to: &[u8]) -> Result<()> {
        // no files; the keys are already deleted
        self.check_space(space)
    }

    fn scan(&self, space: Space, prefix: &[u8], start: &[u8], limit: usize) -> Result<Vec<Entry>> {
        let spaces = self.spaces.read().map_err(poisoned)?;
        let tree = spaces
            .get(space.name)
            .ok_or(KvError::UnknownSpace(space.name))?;
        let from = if start > prefix {
            start.to_vec()
        } else {
            prefix.to_vec()
        };
        Ok(tree
            .range(from..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_rev(
        &self,
        space: Space,
        prefix: &[u8],
        before: &[u8],
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let spaces = self.spaces.read().map_err(poisoned)?;
        let tree = spaces
            .get(space.name)
            .ok_or(KvError::UnknownSpace(space.name))?;
        let iter: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = if before.is_empty() {
            match crate::prefix_end(prefix) {
                Some(end) => Box::new(tree.range(..end).rev()),
                None => Box::new(tree.iter().rev()),
            }
        } else {
            Box::new(tree.range(..before.to_vec()).rev())
        };
        Ok(iter
            .skip_while(|(k, _)| !k.starts_with(prefix) && k.as_slice() > prefix)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_passes_the_conformance_suite() {
        crate::conformance::run(&MemoryStore::new(crate::conformance::SPACES));
    }
}
