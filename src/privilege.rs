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
///
/// Only regular files with one link and real directories are handed over, and never
/// through a symbolic link (`fchownat` with `AT_SYMLINK_NOFOLLOW`): the user may write in
/// those directories, and root following a link the user planted (or chowning a device
/// such as `--out /dev/null`) would give the user any file on the system. Anything else
/// is left as it is.
pub fn give_to(name: &str, paths: &[std::path::PathBuf]) -> Result<(), PrivilegeError> {
    use nix::unistd::User;
    let sys = |what: &'static str| {
        let user = name.to_string();
        move |source| PrivilegeError::Sys { user, what, source }
    };
    let user = User::from_name(name)
        .map_err(sys("look up the user"))?
        .ok_or_else(|| PrivilegeError::NoUser(name.to_string()))?;
    for p in paths {
        let is_dir = hand_over(p, &user)
            .map_err(sys("hand an output file or a sink's state to the user"))?;
        if is_dir {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                hand_over(&e.path(), &user).map_err(sys("hand a sink's spill file to the user"))?;
            }
        }
    }
    Ok(())
}

/// Chowns `p` to `user` if it is a real directory or a regular file with one link (not
/// following a symbolic link); returns whether it is a directory.
fn hand_over(p: &std::path::Path, user: &nix::unistd::User) -> Result<bool, nix::Error> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return Ok(false); // gone, or never created (nothing to hand over)
    };
    let kind = meta.file_type();
    let safe = kind.is_dir() || (kind.is_file() && meta.nlink() == 1);
    if safe {
        nix::unistd::fchownat(
            None,
            p,
            Some(user.uid),
            Some(user.gid),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
    }
    Ok(kind.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Handing the output files to the user never follows a symbolic link or a second
    /// hard link: the user may write in the output directory and could plant one that
    /// points at any file (a review found root chowning a link's target).
    #[test]
    fn give_to_skips_links_and_devices() {
        if !nix::unistd::Uid::effective().is_root() {
            assert!(
                std::env::var("CI").is_err(),
                "CI runs the tests as root: this one needs it"
            );
            eprintln!("not root: give_to_skips_links_and_devices not run");
            return;
        }
        let Ok(Some(nobody)) = nix::unistd::User::from_name("nobody") else {
            panic!("no user nobody on this system");
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "root only").expect("write");
        let link = dir.path().join("events.jsonl");
        std::os::unix::fs::symlink(&secret, &link).expect("symlink");
        let hard = dir.path().join("hard.jsonl");
        std::fs::hard_link(&secret, &hard).expect("hard link");
        let plain = dir.path().join("plain.jsonl");
        std::fs::write(&plain, "").expect("write");
        let paths = vec![
            link.clone(),
            hard,
            plain.clone(),
            "/dev/null".into(),
            dir.path().join("missing"),
        ];
        give_to("nobody", &paths).expect("give_to");
        let owner = |p: &std::path::Path| std::fs::metadata(p).expect("stat").uid();
        assert_eq!(owner(&secret), 0, "a link's target was handed over");
        assert_eq!(owner(std::path::Path::new("/dev/null")), 0);
        assert_eq!(
            owner(&plain),
            nobody.uid.as_raw(),
            "the regular file is handed over"
        );
    }
}
