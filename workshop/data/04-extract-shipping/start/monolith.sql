CREATE TABLE shipping_shipment (
  id INTEGER PRIMARY KEY AUTOINCREMENT, order_id INTEGER NOT NULL, carrier VARCHAR(40) NOT NULL,
  tracking_code VARCHAR(64) NOT NULL, status VARCHAR(20) NOT NULL, notes TEXT NOT NULL DEFAULT '',
  shipped_at DATETIME NULL);
INSERT INTO shipping_shipment (order_id, carrier, tracking_code, status, notes, shipped_at) VALUES
  (1, 'DHL', 'DHL-0001', 'shipped', 'fragile', '2026-01-02 10:00:00'),
  (2, 'UPS', 'UPS-0002', 'pending', '', NULL),
  (3, 'DHL', 'DHL-0003', 'delivered', 'left at door', '2026-01-03 08:00:00');
