use super::lease::{Lease, Operation};
use super::*;
use crate::store::StoreOptions;

fn catalog() -> Catalog {
    Catalog::new(Store::open("memory://", &StoreOptions::default()).unwrap())
}

fn draft(msg: &str) -> NewVersion {
    NewVersion {
        manifest: Sha256::of(msg.as_bytes()),
        manifest_size: 1,
        parent: None,
        files: 1,
        bytes: 2,
        message: msg.into(),
    }
}

#[tokio::test]
async fn commit_resolve_delete() {
    let c = catalog();
    assert!(matches!(
        c.resolve("ds", VersionSel::Latest).await,
        Err(CatalogError::UnknownDataset(_))
    ));
    assert_eq!(c.commit("ds", draft("one")).await.unwrap().version, 1);
    assert_eq!(c.commit("ds", draft("two")).await.unwrap().version, 2);
    assert_eq!(
        c.resolve("ds", VersionSel::Latest).await.unwrap().message,
        "two"
    );
    c.delete("ds", 2).await.unwrap();
    assert_eq!(
        c.resolve("ds", VersionSel::Latest).await.unwrap().version,
        1
    );
    assert!(matches!(
        c.resolve("ds", VersionSel::Number(2)).await,
        Err(CatalogError::DeletedVersion(..))
    ));
    assert!(matches!(
        c.resolve("ds", VersionSel::Number(9)).await,
        Err(CatalogError::UnknownVersion(..))
    ));
    // A deleted number is never reused.
    assert_eq!(c.commit("ds", draft("three")).await.unwrap().version, 3);
    assert_eq!(c.dataset_names().await.unwrap(), ["ds"]);
    assert_eq!(c.versions("ds").await.unwrap().len(), 3);
}

#[tokio::test]
async fn concurrent_commits_get_distinct_numbers() {
    let c = catalog();
    let commits = (0..16).map(|i| {
        let c = c.clone();
        tokio::spawn(async move {
            c.commit("ds", draft(&format!("m{i}")))
                .await
                .unwrap()
                .version
        })
    });
    let mut got: Vec<u64> = futures::future::join_all(commits)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got, (1..=16).collect::<Vec<_>>());
}

#[tokio::test]
async fn gc_and_push_leases_see_each_other() {
    let c = catalog();
    let push = Lease::acquire(c.store(), Operation::Push).await.unwrap();
    let gc = Lease::acquire(c.store(), Operation::Gc).await.unwrap();
    assert_eq!(gc.others(Operation::Push).await.unwrap().len(), 1);
    assert_eq!(push.others(Operation::Gc).await.unwrap().len(), 1);
    assert!(push.others(Operation::Push).await.unwrap().is_empty());
    gc.release().await;
    let left = push
        .wait_for_none(Operation::Gc, std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert!(left.is_empty());
    push.release().await;
    assert!(c.store().list("locks/").await.unwrap().is_empty());
}
