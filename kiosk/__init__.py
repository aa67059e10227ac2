"""City Kiosk appliance core: no Kivy here."""
