"""What leaves the tables: reports, marts, SQL and exports."""
