//! The process's limit of open files. Every connection is a file, so a
//! node configured for thousands of connections needs more than the soft
//! limit of 1,024 many systems start processes with: at that limit the
//! kernel refuses new sockets (`EMFILE`) long before the node's own
//! admission rules apply, and refuses the admin endpoint too. At start a
//! node raises its soft limit to the hard limit (as Go's runtime and nginx
//! do) and says once, with the figure, when even the hard limit is below
//! what its configured connection limits need.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Files a node keeps open besides its HTTPS connections: its database,
/// QUIC and admin sockets, log and spool files, and room for accept
/// bursts while closing connections are torn down.
pub const FILES_BESIDES_CONNECTIONS: u64 = 256;

/// The soft limit before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub before: u64,
    pub now: u64,
}

fn soft(limit: &Rlimit) -> u64 {
    limit.current.unwrap_or(u64::MAX)
}

/// Raises the soft limit of open files to the hard limit.
pub fn raise() -> std::io::Result<OpenFiles> {
    let limit = getrlimit(Resource::Nofile);
    let before = soft(&limit);
    if limit.current == limit.maximum {
        return Ok(OpenFiles {
            before,
            now: before,
        });
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    )?;
    Ok(OpenFiles {
        before,
        now: soft(&getrlimit(Resource::Nofile)),
    })
}

/// Raises the limit for a node that may hold `connections` HTTPS
/// connections at once, and logs what it did; an error line when the
/// limit stays below what those connections need.
pub fn raise_for(connections: u64) -> OpenFiles {
    let needed = connections.saturating_add(FILES_BESIDES_CONNECTIONS);
    match raise() {
        Ok(files) => {
            if files.now < needed {
                tracing::error!(
                    open_files = files.now,
                    needed,
                    "the limit of open files is below what the connection limits need: raise the hard limit (LimitNOFILE= in a systemd unit, ulimit -Hn)"
                );
            } else if files.before != files.now {
                tracing::debug!(
                    from = files.before,
                    to = files.now,
                    "open files limit raised"
                );
            }
            files
        }
        Err(e) => {
            tracing::error!(error = %e, needed, "the limit of open files could not be raised");
            let now = soft(&getrlimit(Resource::Nofile));
            OpenFiles { before: now, now }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let hard = getrlimit(Resource::Nofile).maximum;
        // Started with the usual soft limit of 1,024.
        let low = hard.map_or(1024, |h| h.min(1024));
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(low),
                maximum: hard,
            },
        )
        .unwrap();
        let files = raise().unwrap();
        assert_eq!(files.before, low);
        assert_eq!(getrlimit(Resource::Nofile).current, hard);
        assert_eq!(files.now, hard.unwrap_or(u64::MAX));
        // Already there: nothing changes.
        assert_eq!(raise().unwrap().before, files.now);
    }
}
