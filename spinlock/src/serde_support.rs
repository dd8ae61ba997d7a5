//! `compute_once` for any serde type, stored as JSON (feature `serde`).

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ComputeError, SpinError};
use crate::key::SpinKey;
use crate::spinlock::Spinlock;

/// The computation's error, or the encoding of its value.
enum Failed<E> {
    Compute(E),
    Encode(serde_json::Error),
}

impl Spinlock {
    /// [`compute_once`](Self::compute_once) for a value of any
    /// `Serialize + DeserializeOwned` type, stored as JSON (behind the
    /// `serde` cargo feature). Every caller, the computing one included,
    /// gets the value decoded from the stored JSON, so all see the same.
    ///
    /// Errors: as `compute_once`; [`SpinError::Codec`] when the value cannot
    /// be encoded, or a stored one cannot be decoded as `T`.
    ///
    /// # Cancel safety
    /// Cancel safe, as [`compute_once`](Self::compute_once).
    ///
    /// ```no_run
    /// # async fn demo(spin: quorate_spinlock::Spinlock) -> Result<(), Box<dyn std::error::Error>> {
    /// let (rows, total): (u32, f64) = spin
    ///     .compute_once_serde("report:2024-06", || async { Ok::<_, std::io::Error>((42, 99.5)) })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn compute_once_serde<K, T, F, Fut, E>(
        &self,
        key: K,
        compute: F,
    ) -> Result<T, ComputeError<E>>
    where
        K: Into<SpinKey>,
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let key = key.into();
        let result_key = self.result_key(key.clone());
        let codec = |reason: serde_json::Error| SpinError::Codec {
            key: result_key.clone(),
            reason: reason.to_string(),
        };
        let stored = self
            .compute_once(key, || async {
                let value = compute().await.map_err(Failed::Compute)?;
                serde_json::to_vec(&value).map_err(Failed::Encode)
            })
            .await;
        match stored {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| codec(e).into()),
            Err(ComputeError::Compute(Failed::Compute(e))) => Err(ComputeError::Compute(e)),
            Err(ComputeError::Compute(Failed::Encode(e))) => Err(codec(e).into()),
            Err(ComputeError::Spin(e)) => Err(ComputeError::Spin(e)),
        }
    }
}
