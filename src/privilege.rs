//! Dropping root after the capture handles are open (`--user NAME`): the sensor needs
//! CAP_NET_RAW only to open the packet socket, never to read from it.

/// Errors of the privilege drop.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user.
    #[error("--user {0}: no such user on this system")]
    NoUser(String),
    /// A system call failed.
    #[error("--user {user}: cannot {what}: {source}")]
    Sys {
        /// The user.
        user: String,
        /// Which step failed.
        what: &'static str,
        /// The OS error.
        source: nix::Error,
    },
}

/// Switches the process to `name`'s uid and gid (supplementary groups cleared to the
/// user's primary group). Must run before any worker thread starts.
pub fn drop_to(name: &str) -> Result<(), PrivilegeError> {
    use nix::unistd::{setgid, setgroups, setuid, User};
    let sys = |what: &'static str| {
        let user = name.to_string();
        move |source| PrivilegeError::Sys { user, what, source }
    };
    let user = User::from_name(name)
        .map_err(sys("look up the user"))?
        .ok_or_else(|| PrivilegeError::NoUser(name.to_string()))?;
    setgroups(&[user.gid]).map_err(sys("set supplementary groups"))?;
    setgid(user.gid).map_err(sys("set the group id"))?;
    setuid(user.uid).map_err(sys("set the user id"))?;
    Ok(())
}

/// Checks that user `name` exists (`config check`).
pub fn check_user(name: &str) -> Result<(), PrivilegeError> {
    nix::unistd::User::from_name(name)
        .map_err(|source| PrivilegeError::Sys {
            user: name.to_string(),
            what: "look up the user",
            source,
        })?
        .map(|_| ())
        .ok_or_else(|| PrivilegeError::NoUser(name.to_string()))
}

/// Gives `paths` (and, for directories, what they contain) to user `name`, so the output
/// files, the seq file and the sinks' spill directories stay writable after [`drop_to`]
/// (SIGHUP reopens the output file as that user).
pub fn give_to(name: &str, paths: &[std::path::PathBuf]) -> Result<(), PrivilegeError> {
    use nix::unistd::{chown, User};
    let sys = |what: &'static str| {
        let user = name.to_string();
        move |source| PrivilegeError::Sys { user, what, source }
    };
    let user = User::from_name(name)
        .map_err(sys("look up the user"))?
        .ok_or_else(|| PrivilegeError::NoUser(name.to_string()))?;
    for p in paths {
        chown(p, Some(user.uid), Some(user.gid))
            .map_err(sys("hand an output file or a sink's state to the user"))?;
        if p.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                chown(&e.path(), Some(user.uid), Some(user.gid))
                    .map_err(sys("hand a sink's spill file to the user"))?;
            }
        }
    }
    Ok(())
}
