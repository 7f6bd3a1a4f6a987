"""Signals the orders context sends; receivers live in the other contexts (tangle T5).

Nothing in ``order_place`` says that placing an order also reserves stock, authorises a
payment, creates a shipment and queues an e-mail: that all happens in receivers connected
in other apps' ``ready()``, inside the same database transaction.
"""

from django.dispatch import Signal

order_placed = Signal()  # kwargs: order
order_cancelled = Signal()  # kwargs: order
