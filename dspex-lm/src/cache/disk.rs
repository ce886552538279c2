//! The disk tier: one redb file, opened (or moved aside when damaged) and read and written on
//! tokio's blocking pool, and the checksummed value format of its entries.

use super::*;

pub(super) enum Lookup {
    Hit(LmResponse),
    Miss,
    Corrupt {
        reason: &'static str,
        removal: Result<(), redb::Error>,
    },
}

/// Why opening the database file failed.
pub(super) enum OpenFailure {
    /// Another handle holds it in an incompatible way: leave the file alone.
    Busy(String),
    /// The file is unusable (not a database, corrupt, unreadable): move it aside.
    Broken(String),
    /// The platform lacks the byte-range locks of the multi-writer mode.
    NoRangeLocks,
}

/// Creates the directory and opens (or creates) the database, moving a broken file aside.
pub(super) fn open_disk(config: &CacheConfig) -> Result<(Database, PathBuf), String> {
    let dir = config
        .resolve_disk_dir()
        .ok_or_else(|| format!("no cache directory: set ${CACHE_DIR_ENV} or HOME"))?;
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("cannot create cache directory {}: {e}", dir.display()))?;
    let path = dir.join(DB_FILE);
    let error = match open_file(&path) {
        Ok(db) => return Ok((db, path)),
        Err(OpenFailure::Broken(error)) => error,
        Err(OpenFailure::Busy(error)) => return Err(format!("{}: {error}", path.display())),
        Err(OpenFailure::NoRangeLocks) => {
            return Err(format!("{}: file locks unsupported", path.display()));
        }
    };
    tracing::warn!(
        path = %path.display(),
        %error,
        "response cache database unusable; moving it aside and starting a new one"
    );
    move_aside(&path)
        .map_err(|e| format!("{}: {error}; moving it aside failed: {e}", path.display()))?;
    match open_file(&path) {
        Ok(db) => Ok((db, path)),
        Err(OpenFailure::Busy(e) | OpenFailure::Broken(e)) => Err(format!(
            "{}: a new database failed too: {e}",
            path.display()
        )),
        Err(OpenFailure::NoRangeLocks) => {
            Err(format!("{}: file locks unsupported", path.display()))
        }
    }
}

/// Renames the database file to `<name>.corrupt-<unix seconds>`.
pub(super) fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".corrupt-{secs}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    Ok(aside)
}

/// Opens the file as a database and makes sure the table exists.
pub(super) fn open_file(path: &Path) -> Result<Database, OpenFailure> {
    let db = match create_db(path, ConcurrencyMode::MultiWriter) {
        // No byte-range locks on this platform: one process (one handle) at a time.
        Err(OpenFailure::NoRangeLocks) => create_db(path, ConcurrencyMode::ExclusiveWriter)?,
        other => other?,
    };
    let ensure_table = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(())
    };
    match catch_unwind(AssertUnwindSafe(ensure_table)) {
        Ok(Ok(())) => Ok(db),
        Ok(Err(error)) => Err(OpenFailure::Broken(error.to_string())),
        Err(_) => Err(OpenFailure::Broken("redb panicked".into())),
    }
}

pub(super) fn create_db(path: &Path, mode: ConcurrencyMode) -> Result<Database, OpenFailure> {
    let mut builder = Builder::new();
    builder
        .set_cache_size(REDB_PAGE_CACHE_BYTES)
        .set_concurrency_mode(mode);
    // redb may panic on a file damaged outside redb; treat that as a broken file.
    match catch_unwind(AssertUnwindSafe(|| builder.create(path))) {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(
            error @ (DatabaseError::DatabaseAlreadyOpen
            | DatabaseError::LockProtocolMismatch
            | DatabaseError::TransactionInProgress),
        )) => Err(OpenFailure::Busy(error.to_string())),
        Ok(Err(DatabaseError::Storage(StorageError::Unsupported))) => {
            Err(OpenFailure::NoRangeLocks)
        }
        Ok(Err(error)) => Err(OpenFailure::Broken(error.to_string())),
        Err(_) => Err(OpenFailure::Broken("redb panicked while opening".into())),
    }
}

pub(super) fn disk_get(db: &Database, key: &CacheKey) -> Result<Lookup, redb::Error> {
    let (reason, bytes) = {
        let txn = db.begin_read()?;
        let table = match txn.open_table(TABLE) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(Lookup::Miss),
            Err(error) => return Err(error.into()),
        };
        let Some(guard) = table.get(key.as_bytes().as_slice())? else {
            return Ok(Lookup::Miss);
        };
        match decode(guard.value()) {
            Ok(response) => return Ok(Lookup::Hit(response)),
            Err(reason) => (reason, guard.value().to_vec()),
        }
    };
    // The read transaction is over: delete the entry in a write transaction.
    Ok(Lookup::Corrupt {
        reason,
        removal: remove_if_unchanged(db, key, &bytes),
    })
}

/// Deletes the entry if it still holds `bytes` (a concurrent put may have replaced it).
pub(super) fn remove_if_unchanged(
    db: &Database,
    key: &CacheKey,
    bytes: &[u8],
) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut table = txn.open_table(TABLE)?;
        let unchanged = table
            .get(key.as_bytes().as_slice())?
            .is_some_and(|current| current.value() == bytes);
        if unchanged {
            table.remove(key.as_bytes().as_slice())?;
        }
    }
    txn.commit()?;
    Ok(())
}

pub(super) fn disk_put(db: &Database, key: &CacheKey, bytes: &[u8]) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.open_table(TABLE)?
        .insert(key.as_bytes().as_slice(), bytes)?;
    txn.commit()?;
    Ok(())
}

pub(super) fn disk_clear(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    txn.delete_table(TABLE)?;
    txn.open_table(TABLE)?;
    txn.commit()?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Value format
// ---------------------------------------------------------------------------------------------

/// `"DXRC"`, version byte, payload length (u64 LE), first 8 bytes of the payload's SHA-256, then
/// the payload: the response as JSON.
pub(super) fn encode(response: &LmResponse) -> Result<Vec<u8>, serde_json::Error> {
    let payload = serde_json::to_vec(response)?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&checksum(&payload));
    out.extend_from_slice(&payload);
    Ok(out)
}

/// The response in `bytes`, or why they are corrupt.
pub(super) fn decode(bytes: &[u8]) -> Result<LmResponse, &'static str> {
    let (header, payload) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or("truncated header")?;
    let (magic, rest) = header.split_at(MAGIC.len());
    let (version, rest) = rest.split_at(1);
    let (length, sum) = rest.split_at(8);
    if magic != MAGIC {
        return Err("bad magic");
    }
    if version[0] != FORMAT_VERSION {
        return Err("unknown format version");
    }
    let length: [u8; 8] = length.try_into().map_err(|_| "bad header")?;
    if u64::from_le_bytes(length) != payload.len() as u64 {
        return Err("length mismatch");
    }
    if sum != checksum(payload) {
        return Err("checksum mismatch");
    }
    serde_json::from_slice(payload).map_err(|_| "invalid JSON")
}

pub(super) fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let digest: [u8; 32] = Sha256::digest(payload).into();
    let mut out = [0; CHECKSUM_LEN];
    out.copy_from_slice(&digest[..CHECKSUM_LEN]);
    out
}
