//! The roles of administrators and what each may do (docs/security.md). The admin API checks a
//! route's [`Permission`] here, then narrows what the caller sees to their tenant (and, for a
//! developer, to the keys they created).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Keys and usage of their tenant(s), audit read; no security settings, no role changes.
    Manager,
    /// Their own keys and usage.
    Developer,
    /// Read-only.
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Manager, Role::Developer, Role::Viewer];

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Manager => "manager",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
        }
    }
}

/// What an admin API route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Their own account: profile, password, sessions, MFA. Every role.
    OwnAccount,
    TenantsRead,
    /// Creating tenants. Unscoped admins only (a tenant-scoped user cannot create tenants).
    TenantsWrite,
    KeysRead,
    /// Create, revoke, rotate. Developers: only keys they created.
    KeysWrite,
    UsersRead,
    /// Create users, change roles, reset MFA.
    UsersWrite,
    /// Everyone's sessions, not only one's own.
    SessionsAll,
    SecurityRead,
    SecurityWrite,
    AuditRead,
    /// Requests and tokens per key. Developers: their own keys only.
    UsageRead,
    RolesRead,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::OwnAccount,
        Permission::TenantsRead,
        Permission::TenantsWrite,
        Permission::KeysRead,
        Permission::KeysWrite,
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::SessionsAll,
        Permission::SecurityRead,
        Permission::SecurityWrite,
        Permission::AuditRead,
        Permission::UsageRead,
        Permission::RolesRead,
    ];
}

impl Role {
    /// The RBAC table (docs/security.md repeats it).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Manager => matches!(
                permission,
                OwnAccount
                    | TenantsRead
                    | KeysRead
                    | KeysWrite
                    | UsersRead
                    | AuditRead
                    | UsageRead
                    | RolesRead
            ),
            Role::Developer => matches!(
                permission,
                OwnAccount | TenantsRead | KeysRead | KeysWrite | UsageRead | RolesRead
            ),
            Role::Viewer => matches!(
                permission,
                OwnAccount | TenantsRead | KeysRead | UsersRead | AuditRead | UsageRead | RolesRead
            ),
        }
    }

    pub fn permissions(self) -> Vec<Permission> {
        Permission::ALL
            .into_iter()
            .filter(|p| self.allows(*p))
            .collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.name()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::parse("Admin"), None);
    }

    #[test]
    fn only_admins_touch_security_settings_and_roles() {
        for role in [Role::Manager, Role::Developer, Role::Viewer] {
            for p in [
                Permission::SecurityRead,
                Permission::SecurityWrite,
                Permission::UsersWrite,
                Permission::TenantsWrite,
                Permission::SessionsAll,
            ] {
                assert!(!role.allows(p), "{role} {p:?}");
            }
        }
        assert_eq!(Role::Admin.permissions().len(), Permission::ALL.len());
        assert!(!Role::Viewer.allows(Permission::KeysWrite));
        assert!(!Role::Developer.allows(Permission::UsersRead));
        assert!(!Role::Developer.allows(Permission::AuditRead));
        assert!(Role::Developer.allows(Permission::UsageRead));
        assert!(Role::Manager.allows(Permission::KeysWrite));
    }
}
