//! The mount's control requests (see [`control`]), answered: ioctls on its root directory
//! from `datastore switch` and `datastore prefetch --mount`.

use super::DatastoreFs;
use crate::mount::control;
use crate::mount::errno;
use fuser::{ReplyIoctl, Request};

impl DatastoreFs {
    /// Answers a switch asked for by `datastore switch` (see [`control`]), from the runtime:
    /// fetching the new manifest must not hold a FUSE thread.
    pub(super) fn switch(&self, req: &Request, in_data: &[u8], reply: ReplyIoctl) {
        if req.uid() != 0 && req.uid() != self.uid {
            return reply.error(errno::NOT_PERMITTED);
        }
        let asked = control::text(in_data);
        let versions = self.versions.clone();
        self.rt.spawn(async move {
            let result = async {
                let target =
                    crate::format::name::parse_target(&asked).map_err(|e| e.to_string())?;
                versions
                    .check_dataset(&target.dataset)
                    .map_err(|e| e.to_string())?;
                versions
                    .switch(target.version)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok((from, to)) if from == to => {
                    reply.ioctl(0, &control::answer(&format!("already on {to}")))
                }
                Ok((from, to)) => reply.ioctl(0, &control::answer(&format!("{from} -> {to}"))),
                Err(why) => {
                    let live = versions.live().label.clone();
                    tracing::error!("switch to {asked} refused, still serving {live}: {why}");
                    reply.ioctl(control::REFUSED, &control::answer(&why))
                }
            }
        });
    }

    /// Takes a piece of a read order sent by `datastore prefetch --mount` (see [`control`]);
    /// the last hands the whole order to the live version's reader, which fetches ahead of
    /// the readers in that order.
    pub(super) fn order(&self, req: &Request, in_data: &[u8], reply: ReplyIoctl) {
        if req.uid() != 0 && req.uid() != self.uid {
            return reply.error(errno::NOT_PERMITTED);
        }
        let live = self.versions.live().clone();
        match self.orders.piece(req.pid(), &live.manifest, in_data) {
            Ok(None) => reply.ioctl(0, &control::answer("")),
            Ok(Some((files, said))) => {
                tracing::info!("{}: {said}", live.label);
                self.rt.spawn(live.reader.follow(files));
                reply.ioctl(0, &control::answer(&said))
            }
            Err(why) => reply.ioctl(control::REFUSED, &control::answer(&why)),
        }
    }
}
