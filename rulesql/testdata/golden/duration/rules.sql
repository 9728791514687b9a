-- WHERE ... FOR: fires once when the condition has held for the duration
-- (on event time in rules test), resolves when it stops holding.
CREATE RULE door_open AS
SELECT topic(2) AS fridge, state.reported.DoorOpened AS open FROM 'fridge/+'
WHERE state.reported.DoorOpened = true FOR 10 MINUTES RESOLVE
THEN webhook(url => 'https://alerts.example/${topic(2)}');
CREATE RULE offline AS
SELECT clientid() AS device FROM 'lifecycle/+' WHERE status = 'offline' FOR 15 MINUTES
