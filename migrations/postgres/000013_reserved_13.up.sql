-- Reserved: a change in progress replaces this file with its migration.
SELECT 1;
