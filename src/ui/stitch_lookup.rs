//! The lookup page's Stitch side: what Stitch itself holds for an order reference, asked live
//! of every configured account that is not halted (the sales order, and its open
//! fulfillments). Reads only: a refused token is shown, never acted on here (the account's next
//! cycle halts it and alerts, as always), and nothing is ever authorised again.

use crate::config::Account;
use crate::stitch::ApiError;
use std::time::Duration;

/// Longest wait for one account's answers: a lookup is a person waiting at a page.
const PER_ACCOUNT: Duration = Duration::from_secs(10);

/// One account's answer.
#[derive(Debug, Clone, Default)]
pub struct InStitch {
    pub account: String,
    /// The sales order: its id and date.
    pub order: Option<(String, String)>,
    /// Open fulfillments of the order: id, status, released at.
    pub fulfillments: Vec<(String, String, String)>,
    /// Why this account could not say (halted, token unreadable, Stitch unreachable…).
    pub error: Option<String>,
}

/// Ask every account in `accounts` (name and whether it is halted) about `order`, at once.
pub async fn lookup(accounts: Vec<(Account, bool)>, order: &str) -> Vec<InStitch> {
    let asks = accounts.into_iter().map(|(acct, halted)| {
        let order = order.to_string();
        async move {
            let name = acct.name.clone();
            if halted {
                return InStitch {
                    account: name,
                    error: Some("halted: Stitch is not asked until the account is resumed".into()),
                    ..Default::default()
                };
            }
            match tokio::time::timeout(PER_ACCOUNT, ask(&acct, &order)).await {
                Ok(Ok(found)) => found,
                Ok(Err(why)) => InStitch { account: name, error: Some(why), ..Default::default() },
                Err(_) => InStitch {
                    account: name,
                    error: Some(format!("no answer from Stitch within {} s", PER_ACCOUNT.as_secs())),
                    ..Default::default()
                },
            }
        }
    });
    futures::future::join_all(asks).await
}

async fn ask(acct: &Account, order: &str) -> Result<InStitch, String> {
    let token = crate::engine::account::read_token(&acct.token).map_err(|e| e.to_string())?;
    let client = crate::engine::account::client_for(acct, &token).map_err(describe)?;
    let found = client.find_order(order).await.map_err(describe)?;
    let open = client.list_open_fulfillments().await.map_err(describe)?;
    Ok(InStitch {
        account: acct.name.clone(),
        order: found.map(|v| (v.order.id, v.order.order_date)),
        fulfillments: open
            .into_iter()
            .filter(|f| f.order_number == order)
            .map(|f| (f.id, f.status, f.created_at.to_rfc3339()))
            .collect(),
        error: None,
    })
}

fn describe(e: ApiError) -> String {
    match e {
        ApiError::Halt { status, message, .. } => format!(
            "Stitch refused this account's credentials ({status}: {message}); its next cycle halts it and raises \
             the alert (the console never authorises again)"
        ),
        other => other.to_string(),
    }
}
