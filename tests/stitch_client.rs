//! The HTTP client against the simulator: pagination and batching limits.

use stitch_bridge::sim::{self, SimOptions};
use stitch_bridge::stitch::{wire, ClientOptions, StitchClient};

#[tokio::test(flavor = "current_thread")]
async fn lists_follow_every_page_in_order() {
    let sim = sim::start_in_background(SimOptions { token: "t".into(), ..Default::default() }).unwrap();
    let client = StitchClient::new(ClientOptions::new(sim.base_url()), "t").unwrap();
    let products: Vec<wire::ProductUpsert> = (0..1201)
        .map(|i| wire::ProductUpsert { sku: format!("PG-{i:05}"), name: None, barcode: None, stock: i })
        .collect();
    for chunk in products.chunks(wire::MAX_PRODUCTS_PER_REQUEST) {
        client.upsert_products(chunk).await.unwrap();
    }
    let listed = client.list_products().await.unwrap();
    let ours: Vec<(String, i64)> =
        listed.iter().filter(|p| p.sku.starts_with("PG-")).map(|p| (p.sku.clone(), p.stock)).collect();
    assert_eq!(ours.len(), 1201);
    assert_eq!(ours, products.iter().map(|p| (p.sku.clone(), p.stock)).collect::<Vec<_>>());
    // One request per page of 500.
    let pages = sim.counters().requests.get("GET /api2/v1/integrations/products").copied().unwrap_or(0);
    assert_eq!(pages, listed.len().div_ceil(wire::INTEGRATIONS_MAX_PAGE_SIZE as usize) as u64);
}
