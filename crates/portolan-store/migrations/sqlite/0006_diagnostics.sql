-- Why a computed value is missing (a failed jq calculation), by property.
ALTER TABLE entities ADD COLUMN diagnostics TEXT NOT NULL DEFAULT '{}';
