"""Reference municipal back-office (bills, fee slips, payments, transit accounts)."""
