//! `graft keys rotate`: re-encrypt every stored secret from the old key to
//! the new one, all or nothing.

use crate::crypto::{CryptoError, Key};
use crate::store::integrations::{SealedColumn, SealedField};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(
        "ENCRYPTION_KEY_OLD does not open the {column} of integration {integration_id}: it is not \
         the key those secrets were sealed with. Nothing was changed"
    )]
    WrongOldKey {
        integration_id: i64,
        column: &'static str,
    },
    #[error("sealing failed: {0}")]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RotateReport {
    pub resealed: usize,
    pub already_current: usize,
}

fn column_label(column: SealedColumn) -> &'static str {
    match column {
        SealedColumn::Token => "token",
        SealedColumn::WebhookSecret => "webhook secret",
    }
}

/// What one stored value becomes: unchanged if the new key opens it
/// already, re-sealed if the old key does, an error otherwise.
fn reseal_one(field: &SealedField, old: &Key, new: &Key) -> Result<(String, bool), RotateError> {
    if new.open(&field.sealed).is_ok() {
        return Ok((field.sealed.clone(), false));
    }
    let plain = old
        .open(&field.sealed)
        .map_err(|_| RotateError::WrongOldKey {
            integration_id: field.integration_id,
            column: column_label(field.column),
        })?;
    Ok((
        new.seal(secrecy::ExposeSecret::expose_secret(&plain))?,
        true,
    ))
}

pub async fn rotate(
    store: &Store,
    old: &Key,
    new: &Key,
    now: i64,
) -> Result<RotateReport, RotateError> {
    let mut report = RotateReport::default();
    let outcome = store
        .reseal_all(
            |field| {
                let (value, changed) = reseal_one(field, old, new)?;
                if changed {
                    report.resealed += 1;
                } else {
                    report.already_current += 1;
                }
                Ok::<_, RotateError>(value)
            },
            now,
        )
        .await?;
    outcome?;
    Ok(report)
}
