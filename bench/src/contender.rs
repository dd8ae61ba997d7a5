//! Contenders: quorate (shared client, tuned, unbatched, dropping guards), rslock and the
//! floor, behind one lock/release interface.

use super::*;

/// One library at one setting.
#[derive(Clone, Debug)]
pub(crate) struct Contender {
    pub(crate) library: &'static str,
    pub(crate) setting: &'static str,
    pub(crate) client: LockClient,
}

#[derive(Clone, Debug)]
pub(crate) enum LockClient {
    /// `options: None` = `redlock.lock(key, TTL)` with the connect defaults.
    Quorate {
        redlock: Redlock,
        options: Option<LockOptions>,
    },
    /// `redlock.lock(key, TTL)` with the connect defaults, the guard then
    /// dropped instead of released (Rust's usual way to end a lock).
    QuorateDropping(Redlock),
    Rslock(rslock::LockManager),
    Floor(Arc<Floor>),
}

/// A held lock of any library.
#[derive(Debug)]
pub(crate) enum Held {
    Quorate(LockGuard),
    /// Ends by drop (see [`LockClient::QuorateDropping`]).
    QuorateDropped(LockGuard),
    Rslock(rslock::Lock),
    Floor {
        floor: Arc<Floor>,
        key: String,
        token: String,
    },
}

impl Contender {
    pub(crate) fn label(&self) -> String {
        format!("{} {}", self.library, self.setting)
    }

    /// One lock call, bounded by the library's own limit and by [`LOCK_CAP`].
    /// Errors are short kinds, for counting.
    pub(crate) async fn lock(&self, key: &str) -> Result<Held, String> {
        let call = async {
            match &self.client {
                LockClient::Quorate {
                    redlock,
                    options: None,
                } => redlock
                    .lock(key, TTL)
                    .await
                    .map(Held::Quorate)
                    .map_err(|e| quorate_kind(&e)),
                LockClient::Quorate {
                    redlock,
                    options: Some(options),
                } => redlock
                    .lock_with([key], options)
                    .await
                    .map(Held::Quorate)
                    .map_err(|e| quorate_kind(&e)),
                LockClient::QuorateDropping(redlock) => redlock
                    .lock(key, TTL)
                    .await
                    .map(Held::QuorateDropped)
                    .map_err(|e| quorate_kind(&e)),
                LockClient::Rslock(manager) => manager
                    .lock(key, TTL)
                    .await
                    .map(Held::Rslock)
                    .map_err(|e| format!("rslock: {e}")),
                LockClient::Floor(floor) => floor.lock(key).await.map(|token| Held::Floor {
                    floor: Arc::clone(floor),
                    key: key.to_owned(),
                    token,
                }),
            }
        };
        match timeout(LOCK_CAP, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("hit the {} s safety cap", LOCK_CAP.as_secs())),
        }
    }

    /// Warm-up pairs on a private key, so connections and scripts are ready.
    pub(crate) async fn warm_up(&self, key: &str) -> usize {
        let mut failed = 0;
        for _ in 0..WARMUP_PAIRS {
            match self.lock(key).await {
                Ok(held) => {
                    if held.release().await.is_err() {
                        failed += 1;
                    }
                }
                Err(_) => failed += 1,
            }
        }
        failed
    }
}

impl Held {
    /// Releases, bounded by [`RELEASE_CAP`]. rslock's unlock reports nothing.
    pub(crate) async fn release(self) -> Result<(), String> {
        let call = async {
            match self {
                Held::Quorate(guard) => guard
                    .release()
                    .await
                    .map(drop)
                    .map_err(|e| quorate_kind(&e)),
                Held::QuorateDropped(guard) => {
                    drop(guard);
                    Ok(())
                }
                Held::Rslock(lock) => {
                    lock.release().await;
                    Ok(())
                }
                Held::Floor { floor, key, token } => {
                    floor.unlock(&key, &token).await;
                    Ok(())
                }
            }
        };
        match timeout(RELEASE_CAP, call).await {
            Ok(result) => result,
            Err(_) => Err(format!("release hit the {} s cap", RELEASE_CAP.as_secs())),
        }
    }
}

pub(crate) fn quorate_kind(error: &quorate_redlock::Error) -> String {
    use quorate_redlock::Error;
    match error {
        Error::Taken { .. } => "quorate: taken".to_owned(),
        Error::NoQuorum { .. } => "quorate: no quorum".to_owned(),
        Error::Expired => "quorate: expired".to_owned(),
        other => format!("quorate: {other}"),
    }
}

/// Every contender, connected to one set of node URLs.
#[derive(Debug)]
pub(crate) struct Contenders {
    pub(crate) quorate_default: Contender,
    pub(crate) quorate_tuned: Contender,
    /// quorate with every request sent as its own command (no batching).
    pub(crate) quorate_unbatched: Contender,
    pub(crate) rslock_default: Contender,
    pub(crate) rslock_tuned: Contender,
    pub(crate) floor: Contender,
}

impl Contenders {
    pub(crate) async fn connect(urls: &[String]) -> Result<Contenders, BoxError> {
        let redlock = Redlock::connect(urls).await?;
        let unbatched = Redlock::builder()
            .urls(urls)
            .fred_settings(quorate_redlock::FredSettings::default().max_batch(1))
            .build()
            .await?;
        let tuned = LockOptions::new()
            .ttl(TTL)
            .retry_delay(QUORATE_TUNED_DELAY)
            .retry_jitter(QUORATE_TUNED_JITTER)
            .acquire_timeout(Some(ACQUIRE_DEADLINE));
        // rslock: `new` panics on a bad URL (it unwraps `Client::open`) and connects
        // lazily on the first command; the warm-up pays for that.
        let rslock_default = rslock::LockManager::new(urls.to_vec());
        let mut rslock_tuned = rslock::LockManager::new(urls.to_vec());
        rslock_tuned.set_retry(RSLOCK_TUNED_RETRIES, RSLOCK_TUNED_DELAY);
        let floor = Arc::new(Floor::connect(urls).await?);
        Ok(Contenders {
            quorate_default: Contender {
                library: "quorate",
                setting: "defaults",
                client: LockClient::Quorate {
                    redlock: redlock.clone(),
                    options: None,
                },
            },
            quorate_tuned: Contender {
                library: "quorate",
                setting: "tuned",
                client: LockClient::Quorate {
                    redlock,
                    options: Some(tuned),
                },
            },
            quorate_unbatched: Contender {
                library: "quorate",
                setting: "unbatched",
                client: LockClient::Quorate {
                    redlock: unbatched,
                    options: None,
                },
            },
            rslock_default: Contender {
                library: "rslock",
                setting: "defaults",
                client: LockClient::Rslock(rslock_default),
            },
            rslock_tuned: Contender {
                library: "rslock",
                setting: "tuned",
                client: LockClient::Rslock(rslock_tuned),
            },
            floor: Contender {
                library: "floor",
                setting: "raw fred",
                client: LockClient::Floor(floor),
            },
        })
    }

    /// The uncontended set: one setting per library (retry settings do not matter
    /// without contention).
    pub(crate) fn uncontended(&self) -> [&Contender; 3] {
        [&self.quorate_default, &self.rslock_default, &self.floor]
    }

    /// B's set: the uncontended set and quorate without batching.
    pub(crate) fn many_keys(&self) -> [&Contender; 4] {
        [
            &self.quorate_default,
            &self.quorate_unbatched,
            &self.rslock_default,
            &self.floor,
        ]
    }

    /// The contended set: each library at its defaults and at its tuned setting.
    pub(crate) fn contended(&self) -> [&Contender; 5] {
        [
            &self.quorate_default,
            &self.quorate_tuned,
            &self.rslock_default,
            &self.rslock_tuned,
            &self.floor,
        ]
    }

    pub(crate) async fn warm_up(&self, tag: &str) {
        for c in self
            .contended()
            .into_iter()
            .chain([&self.quorate_unbatched])
        {
            let key = format!("bench:{tag}:{}:{}", c.library, c.setting);
            let failed = c.warm_up(&key).await;
            if failed > 0 {
                println!(
                    "warning: {}: {failed} of {WARMUP_PAIRS} warm-up pairs failed",
                    c.label()
                );
            }
        }
    }
}
