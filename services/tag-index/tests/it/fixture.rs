//! A tag store over either key-value store, reopenable.

use std::sync::Arc;

use strata_kv::{KvStore, MemoryStore, RocksStore};
use strata_tag_index::{StoreOptions, TagStore, name::TagName};
use strata_types::Digest;

/// Which key-value store backs a fixture.
pub enum Backend {
    Memory(Arc<MemoryStore>),
    Rocks(tempfile::TempDir),
}

/// A store under test.
pub struct Fixture {
    pub store: TagStore,
    backend: Backend,
    options: StoreOptions,
}

impl Fixture {
    pub fn memory() -> Self {
        Self::memory_with(StoreOptions::default())
    }

    pub fn memory_with(options: StoreOptions) -> Self {
        let kv = Arc::new(MemoryStore::new(strata_tag_index::store::SPACES));
        Self::open(Backend::Memory(kv), options)
    }

    pub fn rocks() -> Self {
        Self::rocks_with(StoreOptions::default())
    }

    pub fn rocks_with(options: StoreOptions) -> Self {
        Self::open(Backend::Rocks(tempfile::tempdir().unwrap()), options)
    }

    fn open(backend: Backend, options: StoreOptions) -> Self {
        let kv: Arc<dyn KvStore> = match &backend {
            Backend::Memory(m) => m.clone(),
            Backend::Rocks(dir) => {
                Arc::new(RocksStore::open(dir.path(), strata_tag_index::store::SPACES).unwrap())
            }
        };
        let store = TagStore::open(kv, options.clone()).unwrap();
        Self {
            store,
            backend,
            options,
        }
    }

    /// Closes the store (its writer thread and database) and opens it again on the same data.
    pub fn reopen(self) -> Self {
        let options = self.options.clone();
        self.reopen_with(options)
    }

    /// [`Self::reopen`] with other options.
    pub fn reopen_with(self, options: StoreOptions) -> Self {
        let Self { store, backend, .. } = self;
        drop(store);
        Self::open(backend, options)
    }
}

/// A distinct digest per number.
pub fn digest(n: u64) -> Digest {
    Digest::of(&n.to_be_bytes())
}

/// A tag name from any Docker form.
pub fn tag(name: &str) -> TagName {
    TagName::parse("name", name).unwrap()
}

/// Generates one test per backend for each named `async fn(Fixture)`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::fixture::Fixture::memory()).await
                }
            )*
        }
        mod rocks {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::fixture::Fixture::rocks()).await
                }
            )*
        }
    };
}
