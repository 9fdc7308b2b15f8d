"""High availability in one place: single instance or several, chosen once at start
(strategy.py); the lease that says who runs singleton work (lease.py); fencing of that work's
writes, with one meaning for "no token" and one signal for a refused write (fence.py); the
claims that keep one delivery per owed message (claims.py); and the take-over of the commands
a dead instance left (takeover.py). Nothing outside ha/ and store/ asks which database runs."""
