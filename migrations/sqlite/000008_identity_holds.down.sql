DROP TABLE identity_holds;
