//! Lists that span pages, walked the same way on every forge: a forge says
//! only how to fetch one page and where the next one is; [`Pages::each_page`]
//! does the walking, bounded, so a forge that links its pages in a circle
//! cannot keep graft reading.

use std::future::Future;

use serde::de::DeserializeOwned;

use super::Result;
use super::error::{ForgeError, ForgeKind};
use super::http::RawResponse;

/// Most pages read for one list.
pub(crate) const MAX_PAGES: usize = 1000;

/// One forge's paginated GETs.
pub(crate) trait Pages: Sync {
    const FORGE: ForgeKind;

    /// One GET of `uri` (the first page's path, or what [`Pages::next_page`]
    /// gave), with the forge's retries; a non-2xx answer is an error.
    fn fetch(&self, what: &str, uri: &str) -> impl Future<Output = Result<RawResponse>> + Send;

    /// A page's items.
    fn items<T: DeserializeOwned>(&self, response: &RawResponse, what: &str) -> Result<Vec<T>> {
        response.json(Self::FORGE, what)
    }

    /// Where the page after `uri` is, read from its answer; `None` on the
    /// last page.
    fn next_page(&self, uri: &str, response: &RawResponse, what: &str) -> Result<Option<String>>;

    /// Hands each page's items to `take`, from `first` on, until the last
    /// page or until `take` answers `false` (it has what it needs). At most
    /// `max_pages` are read: `Ok(false)` when the forge had more.
    fn each_page<T, F>(
        &self,
        what: &str,
        first: &str,
        max_pages: usize,
        mut take: F,
    ) -> impl Future<Output = Result<bool>> + Send
    where
        T: DeserializeOwned + Send,
        F: FnMut(Vec<T>) -> bool + Send,
    {
        async move {
            let mut next = Some(first.to_string());
            for _ in 0..max_pages {
                let Some(uri) = next.take() else {
                    return Ok(true);
                };
                let response = self.fetch(what, &uri).await?;
                if !take(self.items(&response, what)?) {
                    return Ok(true);
                }
                next = self.next_page(&uri, &response, what)?;
            }
            Ok(next.is_none())
        }
    }

    /// Every item of the list whose first page is `first`.
    fn get_all<T: DeserializeOwned + Send>(
        &self,
        what: &str,
        first: &str,
    ) -> impl Future<Output = Result<Vec<T>>> + Send {
        async move {
            let mut items = Vec::new();
            let complete = self
                .each_page(what, first, MAX_PAGES, |page| {
                    items.extend(page);
                    true
                })
                .await?;
            if complete {
                return Ok(items);
            }
            Err(ForgeError::Unexpected {
                forge: Self::FORGE,
                message: format!("more than {MAX_PAGES} pages while {what}"),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages `?page=N` of numbers; `last` is the last page, `None` links
    /// every page to the first again.
    struct Numbers {
        last: Option<u32>,
    }

    impl Pages for Numbers {
        const FORGE: ForgeKind = ForgeKind::Gitlab;

        async fn fetch(&self, _what: &str, uri: &str) -> Result<RawResponse> {
            let page = uri.trim_start_matches("/n?page=");
            Ok(RawResponse {
                status: 200,
                headers: Default::default(),
                body: format!("[{page}]"),
            })
        }

        fn next_page(&self, uri: &str, _: &RawResponse, _: &str) -> Result<Option<String>> {
            let page: u32 = uri.trim_start_matches("/n?page=").parse().expect("a page");
            Ok(match self.last {
                Some(last) if page >= last => None,
                Some(_) => Some(format!("/n?page={}", page + 1)),
                None => Some("/n?page=1".into()),
            })
        }
    }

    #[tokio::test]
    async fn walks_every_page_in_order() {
        let all: Vec<u32> = Numbers { last: Some(3) }
            .get_all("counting", "/n?page=1")
            .await
            .unwrap();
        assert_eq!(all, vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn pages_in_a_circle_end_in_an_error() {
        let error = Numbers { last: None }
            .get_all::<u32>("counting", "/n?page=1")
            .await
            .unwrap_err();
        assert_eq!(error.class(), "unexpected");
        assert!(
            error
                .to_string()
                .contains("more than 1000 pages while counting")
        );
    }

    #[tokio::test]
    async fn a_walk_stops_where_asked_or_at_its_bound() {
        let mut seen = Vec::new();
        let complete = Numbers { last: Some(9) }
            .each_page("counting", "/n?page=1", 5, |page: Vec<u32>| {
                seen.extend(page);
                seen.len() < 2
            })
            .await
            .unwrap();
        assert!(complete, "stopping on purpose is not a cut list");
        assert_eq!(seen, vec![1, 2]);
        let mut seen = Vec::new();
        let complete = Numbers { last: Some(9) }
            .each_page("counting", "/n?page=1", 3, |page: Vec<u32>| {
                seen.extend(page);
                true
            })
            .await
            .unwrap();
        assert!(!complete, "pages 4 to 9 were left");
        assert_eq!(seen, vec![1, 2, 3]);
    }
}
